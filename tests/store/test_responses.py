"""The OpenAI front door's responses table: which turn of which chat a response is."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from chatd.store import Database, NotFound, Store, current_revision, upgrade
from chatd.store._migrations import _config
from chatd.types import Role, TextPart
from tests.store.conftest import Backend


async def test_a_response_names_its_chat_and_turn_for_its_owner_only(store: Store) -> None:
    ann = await store.create_user("ann")
    bob = await store.create_user("bob")
    chat = await store.create_chat(ann.id, [TextPart("hi")])
    first = await store.create_response(
        "resp_1", chat.id, ann.id, after_seq=0, position=1, request={"model": "default"}
    )
    assert (await store.get_response("resp_1", owner_id=ann.id)) == first
    with pytest.raises(NotFound):
        await store.get_response("resp_1", owner_id=bob.id)
    await store.create_response("resp_2", chat.id, ann.id, after_seq=42, position=3, request={})
    assert await store.latest_response_id(chat.id) == "resp_2"
    with pytest.raises(NotFound):
        await store.delete_response("resp_2", owner_id=bob.id)
    await store.delete_response("resp_2", owner_id=ann.id)
    assert await store.latest_response_id(chat.id) == "resp_1"
    await store.interrupt(chat.id)  # pending → waiting: deletable
    await store.delete_chat(chat.id)  # a response goes with its chat
    with pytest.raises(NotFound):
        await store.get_response("resp_1", owner_id=ann.id)


async def test_a_new_chat_can_start_from_a_history_the_client_brings(store: Store) -> None:
    ann = await store.create_user("ann")
    chat = await store.create_chat(
        ann.id,
        [TextPart("and now?")],
        system_prompt="Be brief.",
        prior=[(Role.USER, [TextPart("hello")]), (Role.ASSISTANT, [TextPart("Hi.")])],
    )
    messages = await store.list_all_messages(chat.id)
    assert [(m.position, str(m.role), m.parts[0].text) for m in messages] == [  # type: ignore[union-attr]
        (1, "system", "Be brief."),
        (2, "user", "hello"),
        (3, "assistant", "Hi."),
        (4, "user", "and now?"),
    ]
    assert chat.last_position == 4 and messages[2].created_by is None


async def test_migration_0004_adds_the_responses_table_and_downgrades(backend: Backend) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db, "0004")
        assert await current_revision(db) == "0004"
        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0003"))
        async with db.read() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "openai_responses" not in tables and "chats" in tables
    finally:
        await db.dispose()
