"""A chat's mode in the store, on both engines, and migration 0008."""

from __future__ import annotations

import pytest
from alembic import command

from chatd.store import (
    PLAN_MODE,
    Database,
    Store,
    TransitionRejected,
    current_revision,
    head_revision,
    upgrade,
)
from chatd.store._migrations import _config
from chatd.types import TextPart
from tests.store.conftest import Backend, table_columns


async def test_mode_is_created_set_and_cleared_by_approval(store: Store) -> None:
    owner = (await store.create_user("mo")).id
    chat = await store.create_chat(owner, [TextPart("plan it")], mode=PLAN_MODE)
    assert chat.mode == PLAN_MODE and (await store.get_chat(chat.id)).mode == PLAN_MODE
    plain = await store.create_chat(owner, [TextPart("just do it")])
    assert plain.mode is None
    assert (await store.set_mode(plain.id, PLAN_MODE)).mode == PLAN_MODE
    assert (await store.set_mode(plain.id, None)).mode is None

    # Approving a plan leaves plan mode with the message; a chat not in plan mode refuses.
    sent = await store.send_message(chat.id, [TextPart("go")], approve_plan=True)
    assert sent.chat.mode is None and (await store.get_chat(chat.id)).mode is None
    before = await store.get_chat(plain.id)
    with pytest.raises(TransitionRejected):
        await store.send_message(plain.id, [TextPart("go")], approve_plan=True)
    after = await store.get_chat(plain.id)
    assert (after.last_position, after.queue_length) == (before.last_position, before.queue_length)


async def test_migration_0008_adds_the_chat_mode_and_downgrades(backend: Backend) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db, "0007")
        store = Store(db)
        owner = (await store.create_user("old")).id
        await upgrade(db)
        assert await current_revision(db) == head_revision()
        assert "mode" in await table_columns(db, "chats")
        chat = await store.create_chat(owner, [TextPart("x")], mode=PLAN_MODE)
        assert (await store.get_chat(chat.id)).mode == PLAN_MODE
        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0007"))
        columns = await table_columns(db, "chats")
        assert "mode" not in columns and "title" in columns
    finally:
        await db.dispose()
