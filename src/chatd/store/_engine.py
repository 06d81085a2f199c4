"""Engines and transactions: one code path for SQLite and PostgreSQL (spec §3.1).

`Database.write()` is the only way a transition gets a connection: on SQLite it is
a `BEGIN IMMEDIATE` transaction (taken under an in-process lock, so writers queue
in asyncio rather than spin in SQLite's busy handler); on PostgreSQL a plain
READ COMMITTED transaction in which the caller locks the chat row with
`SELECT … FOR UPDATE`. `Database.read()` is an autocommit connection.
Nothing here knows about chats.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_

from chatd.store._nul import decode_json, encode_json
from chatd.store._sqlite_driver import (
    begin_on_connection_thread,
    fetch_on_connection_thread,
    one_hop_dbapi,
)

__all__ = ["Database", "data_dir_from_env", "database_url_from_env"]

log = logging.getLogger("chatd.store")

DEFAULT_DATA_DIR = "./.chatd"
# 5 s: how long a transition waits for another writer's lock before failing
# (SQLite busy_timeout, PostgreSQL lock_timeout; spec §3.1).
LOCK_TIMEOUT_MS = 5000
_BEGIN_OPTION = "chatd_sqlite_begin"
# SQLite read connections kept open (each is an aiosqlite thread): 64, so a burst of
# concurrent requests does not open and close one per read (20 churned ~0.8 connections,
# four PRAGMAs and a thread each, per turn at 50 clients); beyond twice as
# many concurrent reads, a read waits for a connection instead of opening one.
_SQLITE_READERS = 64


def data_dir_from_env() -> Path:
    """`$CHATD_DATA_DIR`, default `./.chatd`."""
    return Path(os.environ.get("CHATD_DATA_DIR") or DEFAULT_DATA_DIR)


def database_url_from_env(data_dir: Path | None = None) -> str:
    """`$CHATD_DATABASE_URL`, default `sqlite+aiosqlite:///$CHATD_DATA_DIR/chatd.db`."""
    url = os.environ.get("CHATD_DATABASE_URL")
    if url:
        return url
    directory = data_dir if data_dir is not None else data_dir_from_env()
    return f"sqlite+aiosqlite:///{directory / 'chatd.db'}"


def _json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class Database:
    """An async engine plus the transaction discipline of its backend."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        self.is_sqlite = self.dialect == "sqlite"
        common: dict[str, Any] = {
            # PostgreSQL's jsonb refuses `\u0000`: its documents encode NUL (`_nul`).
            "json_serializer": _json_dumps if self.is_sqlite else encode_json,
            "json_deserializer": msgspec.json.decode if self.is_sqlite else decode_json,
            # Every transaction ends in an explicit commit or rollback, so the pool's
            # own rollback on check-in would be a wasted round trip.
            "pool_reset_on_return": None,
        }
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                url,
                connect_args={"timeout": LOCK_TIMEOUT_MS / 1000},
                module=one_hop_dbapi(),
                **common,
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
            self._writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            self._write_lock: asyncio.Lock | None = asyncio.Lock()
            self._read_engine: AsyncEngine | None = _sqlite_reader(url, common)
            self._reader = self._read_engine
        else:
            self.engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"server_settings": {"lock_timeout": str(LOCK_TIMEOUT_MS)}},
                **common,
            )
            self._writer = self.engine
            self._write_lock = None
            self._read_engine = None
            # Reads run in autocommit: no BEGIN/COMMIT round trips around one SELECT.
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; commits on normal exit, rolls back on error."""
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads, in autocommit mode: every statement sees the latest
        committed state; several statements are not one snapshot."""
        async with self._reader.connect() as conn:
            yield conn

    async def fetch_raw(
        self, conn: AsyncConnection, sqlite_sql: str, postgres_sql: str, params: Sequence[Any]
    ) -> list[Any]:
        """The rows of one statement run on `conn`'s driver itself, with no SQLAlchemy
        statement, compile or result layer: for the hottest reads. `?` placeholders on
        SQLite, `$n` on PostgreSQL; values come back as the driver gives them (on
        PostgreSQL, jsonb through the engine's deserializer, NUL decoded)."""
        raw = await conn.get_raw_connection()
        if self.is_sqlite:
            return await fetch_on_connection_thread(raw.dbapi_connection, sqlite_sql, params)
        driver: Any = raw.driver_connection
        rows: list[Any] = await driver.fetch(postgres_sql, *params)
        return rows

    async def dispose(self) -> None:
        if self._read_engine is not None:
            await self._read_engine.dispose()
        await self.engine.dispose()


def _sqlite_reader(url: str, common: dict[str, Any]) -> AsyncEngine:
    """SQLite's reads: their own engine, in autocommit from connect on.

    Autocommit as an execution option is applied to the connection at every
    checkout and undone at every return: two aiosqlite thread hops per read (~20 %
    of a replica's CPU under load). Here it is set once per connection, no BEGIN is
    issued (no `begin` listener), and the no-op ROLLBACK on return is skipped. The
    pool holds enough connections that concurrent reads do not churn them (each
    new aiosqlite connection is a thread, an open and four PRAGMAs).
    """
    engine = create_async_engine(
        url,
        connect_args={"timeout": LOCK_TIMEOUT_MS / 1000},
        module=one_hop_dbapi(),
        isolation_level="AUTOCOMMIT",
        skip_autocommit_rollback=True,
        pool_size=_SQLITE_READERS,
        max_overflow=_SQLITE_READERS,
        **common,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let `_sqlite_on_begin` issue BEGIN itself (pysqlite's own BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        f"busy_timeout={LOCK_TIMEOUT_MS}",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Straight to aiosqlite in one thread hop: through `exec_driver_sql` the BEGIN
    # costs a cursor, an execute and a close (three hops and ~1 ms of CPU).
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    mode = options.get(_BEGIN_OPTION, "DEFERRED")
    if await_(begin_on_connection_thread(conn.connection.dbapi_connection, mode)):
        log.warning("sqlite: rolled back a transaction a cancelled task left open")
