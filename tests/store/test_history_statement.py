"""`load_history` runs one hand-written statement on the driver: it must read exactly
what the SQLAlchemy query over the same schema reads, on both engines, whatever the
chat holds (tool steps, compaction, hidden notes, NULs) and wherever the read starts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from chatd.store import Store
from chatd.store._models import Visibility
from chatd.store._reads import _model_parts
from chatd.store._schema import chat_messages, chats
from chatd.types import MESSAGE_KIND_SUMMARY, Message
from tests.store.helpers import running_chat, text_step, tool_step


async def _by_sqlalchemy(store: Store, chat_id: str, after: int) -> tuple[Any, list[Message]]:
    m = chat_messages.c
    async with store.db.read() as conn:
        head = (
            await conn.execute(
                sa.select(chats.c.history_version, chats.c.history_reset_version).where(
                    chats.c.id == chat_id
                )
            )
        ).one()
        rows = await conn.execute(
            sa.select(m.position, m.role, m.parts, m.kind)
            .where(
                m.chat_id == chat_id,
                m.position > after,
                ~m.deleted,
                ~m.compressed,
                m.visibility != Visibility.USER,
            )
            .order_by(m.position)
        )
        messages = [
            Message(role, _model_parts(parts), kind=kind if kind == MESSAGE_KIND_SUMMARY else "")
            for _, role, parts, kind in rows
        ]
    return tuple(head), messages


async def test_the_statement_reads_what_the_query_reads(store: Store) -> None:
    chat, fence = await running_chat(store)
    await store.commit_step(fence, "s1", tool_step("call_1"))
    await store.commit_step(fence, "s2", text_step("nul \x00 and \ue000 kept"))
    await store.commit_compaction(fence, "summary of it all", summary="all")
    await store.commit_step(fence, "s3", text_step("after the summary"))
    last = (await store.load_history(chat.id)).last_position
    for after in range(last + 2):
        history = await store.load_history(chat.id, after_position=after)
        head, messages = await _by_sqlalchemy(store, chat.id, after)
        assert (history.history_version, history.history_reset_version) == head
        assert [(m.role, m.content, m.kind) for m in history.messages] == [
            (m.role, m.content, m.kind) for m in messages if m.content
        ], after
