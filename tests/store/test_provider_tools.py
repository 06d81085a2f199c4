"""Model configs' provider tools in the store, on both engines, and migration 0007."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from chatd.store import Database, Store, current_revision, upgrade
from chatd.store._migrations import _config
from tests.store.conftest import Backend, table_columns


async def test_provider_tools_round_trip_once_each_and_clear(store: Store) -> None:
    config = await store.create_model_config(
        "searcher", "anthropic", "claude", provider_tools=["web_search", "web_search"]
    )
    assert config.provider_tools == ["web_search"]
    assert (await store.get_model_config(config.id)).provider_tools == ["web_search"]
    plain = await store.create_model_config("plain", "scripted", "m")
    assert plain.provider_tools is None
    for cleared in ([], None):
        changed = await store.update_model_config(config.id, provider_tools=cleared)
        assert changed.provider_tools is None
        await store.update_model_config(config.id, provider_tools=["web_search"])
    listed = {c.name: c.provider_tools for c in await store.list_model_configs()}
    assert (listed["plain"], listed["searcher"]) == (None, ["web_search"])


async def test_migration_0007_adds_provider_tools_and_downgrades(backend: Backend) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db, "0006")
        store = Store(db)
        async with db.write() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO model_configs (id, name, provider, model, options,"
                    " compaction_threshold_percent, enabled, is_default, created_at, updated_at)"
                    " VALUES ('c1', 'old', 'scripted', 'm', '{}', 70, false, false,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(db, "0007")
        assert await current_revision(db) == "0007"
        assert (await store.get_model_config("c1")).provider_tools is None
        await store.update_model_config("c1", provider_tools=["web_search"])
        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0006"))
        columns = await table_columns(db, "model_configs")
        assert "provider_tools" not in columns and "name" in columns
    finally:
        await db.dispose()
