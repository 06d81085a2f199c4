"""Users' built-in tool policy in the store, and the migration that added it (both engines)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from chatd.store import Database, InvalidRequest, NotFound, Store, current_revision, upgrade
from chatd.store._migrations import _config
from tests.store.conftest import Backend


async def test_a_tool_policy_is_set_read_and_cleared(store: Store) -> None:
    ann = await store.create_user("ann")
    assert ann.tool_policy is None
    granted = await store.set_tool_policy(ann.id, "all")
    assert granted.tool_policy == "all" and granted.username == "ann"
    assert (await store.get_user(ann.id)).tool_policy == "all"
    assert (await store.get_user_by_name("ann")).tool_policy == "all"
    token, _ = await store.create_api_token(ann.id)
    authenticated = await store.authenticate_token(token)
    assert authenticated is not None and authenticated.tool_policy == "all"
    cleared = await store.set_tool_policy(ann.id, None)
    assert cleared.tool_policy is None
    authenticated = await store.authenticate_token(token)
    assert authenticated is not None and authenticated.tool_policy is None


async def test_unknown_users_and_policies_are_refused(store: Store) -> None:
    ann = await store.create_user("ann")
    with pytest.raises(NotFound):
        await store.set_tool_policy("no-such-user", "all")
    with pytest.raises(InvalidRequest):
        await store.set_tool_policy(ann.id, "root")
    assert (await store.get_user(ann.id)).tool_policy is None


async def test_list_users_returns_everyone_by_name(store: Store) -> None:
    assert await store.list_users() == []
    zed = await store.create_user("zed", is_admin=True)
    ann = await store.create_user("ann")
    await store.set_tool_policy(ann.id, "none")
    listed = await store.list_users()
    assert [(u.username, u.is_admin, u.tool_policy) for u in listed] == [
        ("ann", False, "none"),
        ("zed", True, None),
    ]
    assert listed[1].id == zed.id


async def test_migration_0003_adds_a_null_tool_policy_and_downgrades_without_losing_rows(
    backend: Backend,
) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db, "0002")
        async with db.write() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO users (id, username, is_admin, created_at) "
                    "VALUES ('u1', 'old', false, CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (id, user_id, name, prefix, secret_hash, created_at)"
                    " VALUES ('t1', 'u1', '', 'chatd_abcdef', 'x', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(db, "0003")
        assert await current_revision(db) == "0003"
        store = Store(db)
        assert (await store.get_user("u1")).tool_policy is None
        assert (await store.set_tool_policy("u1", "files")).tool_policy == "files"

        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0002"))
        assert await current_revision(db) == "0002"
        async with db.read() as conn:
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in sa.inspect(c).get_columns("users")]
            )
            tokens = await conn.scalar(sa.text("SELECT count(*) FROM api_tokens"))
        assert "tool_policy" not in columns
        assert tokens == 1  # the users table was altered, not copied (no cascade)
    finally:
        await db.dispose()
