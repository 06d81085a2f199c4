"""Transitions of an idle chat (spec §2.4): compaction request, clear, archive, title, delete."""

from __future__ import annotations

import sqlalchemy as sa

from chatd.store._agents import interrupt_locked, lock_busy_children
from chatd.store._base import StoreBase
from chatd.store._errors import RejectionKind
from chatd.store._models import Chat, ChatStatus, Visibility
from chatd.store._schema import chat_messages, chats
from chatd.store._tx import CANCELLED_TOOL_RESULT, chat_from_row
from chatd.types import Role, TextPart, ToolCallPart, ToolResultPart, ToolResultText

__all__ = ["ChatAdministration"]

CLEAR_MARKER = (
    "The user cleared the conversation here; earlier messages are no longer part of the context."
)
CLEARED_TOOL = "chat_cleared"


class ChatAdministration(StoreBase):
    async def request_compaction(self, chat_id: str) -> Chat:
        """W/E0 → P0, E1 → P1: ask the next run to compact history first (AL §5)."""
        async with self._transition(chat_id, "request_compaction") as tx:
            tx.require(ChatStatus.WAITING, ChatStatus.ERROR)
            m = chat_messages.c
            found = await tx.conn.scalar(
                sa.select(m.id)
                .where(
                    m.chat_id == chat_id,
                    m.position > tx.row["boundary_position"],
                    m.role == Role.ASSISTANT,
                    m.kind.is_(None),
                    ~m.deleted,
                    ~m.compressed,
                )
                .limit(1)
            )
            if found is None:
                raise tx.reject(RejectionKind.NOTHING_TO_COMPACT)
            tx.set(compaction_requested_at=tx.now, last_error=None)
            tx.history_changed()
            tx.set_status(ChatStatus.PENDING)
            return await tx.save()

    async def clear_context(self, chat_id: str) -> Chat:
        """W/E0 → W: hide everything so far from the model behind a clear boundary."""
        async with self._transition(chat_id, "clear_context") as tx:
            tx.require(ChatStatus.WAITING, ChatStatus.ERROR)
            if tx.queue_length:
                raise tx.reject()  # E1: there is no waiting-with-queue state
            m = chat_messages.c
            found = await tx.conn.scalar(
                sa.select(m.id)
                .where(
                    m.chat_id == chat_id,
                    m.position > tx.row["boundary_position"],
                    m.visibility != Visibility.USER,
                    sa.or_(m.kind.is_(None), m.kind != "system_prompt"),
                    ~m.deleted,
                    ~m.compressed,
                )
                .limit(1)
            )
            if found is None:
                raise tx.reject(RejectionKind.NOTHING_TO_CLEAR)
            await tx.answer_pending_calls(CANCELLED_TOOL_RESULT)
            version = tx.bump()
            await tx.conn.execute(
                sa.update(chat_messages)
                .where(
                    m.chat_id == chat_id,
                    ~m.compressed,
                    ~m.deleted,
                    sa.or_(m.kind.is_(None), m.kind != "system_prompt"),
                )
                .values(compressed=True, revision=version)
            )
            call_id = f"clear_{version}"
            boundary = {"kind": "boundary"}
            added = await tx.append_messages(
                [
                    boundary
                    | {
                        "role": Role.SYSTEM,
                        "visibility": Visibility.MODEL,
                        "parts": [TextPart(CLEAR_MARKER)],
                    },
                    boundary
                    | {
                        "role": Role.ASSISTANT,
                        "visibility": Visibility.USER,
                        "parts": [ToolCallPart(call_id, CLEARED_TOOL, "{}", created_at=tx.now)],
                    },
                    boundary
                    | {
                        "role": Role.TOOL,
                        "visibility": Visibility.USER,
                        "parts": [
                            ToolResultPart(
                                call_id,
                                CLEARED_TOOL,
                                ToolResultText("The conversation context was cleared."),
                                created_at=tx.now,
                            )
                        ],
                    },
                ]
            )
            tx.set(boundary_position=added[-1].position, last_error=None)
            tx.history_changed(reset=True)
            tx.set_status(ChatStatus.WAITING)
            return await tx.save()

    async def set_archived(self, chat_id: str, archived: bool) -> Chat:
        """W/E → XW/XE and back; busy chats cannot be archived."""
        async with self._transition(chat_id, "set_archived") as tx:
            if archived:
                tx.require(ChatStatus.WAITING, ChatStatus.ERROR)
            elif not tx.archived:
                raise tx.reject()
            tx.bump()
            tx.set(archived=archived)
            return await tx.save()

    async def update_title(
        self, chat_id: str, title: str, *, source: str = "user", only_if_source: str | None = None
    ) -> Chat:
        """Metadata only: allowed in every state, bumps `updated_at` but no version.

        With `only_if_source`, changes nothing unless the title still has that source
        (a generated title never replaces one the user set meanwhile).
        """
        async with self._transition(chat_id, "update_title") as tx:
            if only_if_source is not None and tx.row["title_source"] != only_if_source:
                return tx.chat
            tx.set(title=title[:256], title_source=source)
            return await tx.save(bump=False)

    async def set_mode(self, chat_id: str, mode: str | None) -> Chat:
        """Metadata only, allowed in every state: the next run reads it (a running turn
        keeps the tools it started with)."""
        async with self._transition(chat_id, "set_mode") as tx:
            if tx.row["mode"] == mode:
                return tx.chat
            tx.set(mode=mode)
            return await tx.save(bump=False)

    async def delete_chat(self, chat_id: str) -> Chat:
        """W/E/archived → gone, with everything that references it. Busy chats are refused.

        A parent goes with its settled children; a child still working is interrupted
        and detached (it becomes a chat of its own, deletable once it has stopped).
        """
        async with self._transition(chat_id, "delete_chat") as tx:
            if not tx.archived:  # archived chats are always waiting or in error
                tx.require(ChatStatus.WAITING, ChatStatus.ERROR)
            chat = tx.chat
            detached = []
            for busy in await lock_busy_children(tx):
                busy.set(parent_id=None)
                detached.append(await interrupt_locked(busy))
            c = chats.c
            gone = (
                (await tx.conn.execute(sa.select(chats).where(c.parent_id == chat_id)))
                .mappings()
                .all()
            )
            await tx.conn.execute(sa.delete(chats).where(c.parent_id == chat_id))
            await tx.conn.execute(sa.delete(chats).where(c.id == chat_id))
        for child in detached:
            self._committed(child)
        for row in gone:
            self._deleted(chat_from_row(row))
        self._deleted(chat)
        if chat.parent_id is not None:  # a parent waiting for this child learns it is gone
            await self._child_committed(chat)
        return chat
