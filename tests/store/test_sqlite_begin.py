"""A writer connection that comes back to the pool inside a transaction (its task was
cancelled before the rollback ran) must not fail the next write on it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chatd.store import Store


async def test_a_transaction_left_open_is_rolled_back_before_the_next_begin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/chatd.db", data_dir=tmp_path)
    try:
        user = await store.create_user("ann")
        async with store.db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            # What a cancelled write leaves behind: BEGIN ran, neither COMMIT nor
            # ROLLBACK did, and the pool (no reset on return) keeps the connection.
            await raw.dbapi_connection._connection.execute("BEGIN IMMEDIATE")
            await raw.dbapi_connection._connection.execute(
                "UPDATE users SET username = 'half-written' WHERE id = ?", (user.id,)
            )
        with caplog.at_level(logging.WARNING, logger="chatd.store"):
            renamed = await store.create_user("bob")
        assert renamed.username == "bob"
        assert (await store.get_user(user.id)).username == "ann"  # never committed
        assert "rolled back a transaction" in caplog.text
    finally:
        await store.close()
