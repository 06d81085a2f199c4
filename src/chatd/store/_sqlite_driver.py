"""SQLite through aiosqlite at one thread hop per statement, for SQLAlchemy's aiosqlite dialect.

aiosqlite runs every call on the connection's own thread, one queued job per call,
and SQLAlchemy's adapter makes four calls per statement: create a cursor, execute,
fetch all rows, close. Each job is a queue put, a thread wake-up, a GIL hand-over
and an event-loop wake-up — 30–70 µs of CPU on a busy 2-core host, most of the cost
of a small read. `one_hop_dbapi()` is a drop-in DBAPI module for
`create_async_engine(..., module=…)` whose cursors do all four in one job. It must
not change what a statement does: same sqlite3 calls, same errors, same rows.
Server-side cursors (unused by chatd) keep aiosqlite's own path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

__all__ = [
    "begin_on_connection_thread",
    "fetch_on_connection_thread",
    "one_hop_dbapi",
]

# (description, rowcount, lastrowid, rows) of one executed statement.
_Outcome = tuple[Any, int, int | None, list[Any]]


def _run_statement(
    connection: sqlite3.Connection, sql: str, parameters: Any, many: bool
) -> _Outcome:
    """On the connection's thread: a cursor's whole life for one statement."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


async def _on_thread(
    connection: aiosqlite.Connection, sql: str, parameters: Any, many: bool
) -> Any:
    """One job on the connection's thread (aiosqlite's own queue, untyped)."""
    submit: Any = connection._execute
    return await submit(_run_statement, connection._conn, sql, parameters, many)


def _begin(connection: sqlite3.Connection, mode: str) -> bool:
    """On the connection's thread: BEGIN, after rolling back a transaction left open
    (a task cancelled mid-transaction can return its connection before the rollback
    ran; BEGIN would then fail with "cannot start a transaction within a
    transaction"). True when there was one to roll back."""
    stale = connection.in_transaction
    if stale:
        connection.execute("ROLLBACK")
    connection.execute(f"BEGIN {mode}")
    return stale


async def begin_on_connection_thread(adapted: Any, mode: str) -> bool:
    """BEGIN `mode` on an adapted connection, in one hop (see `_begin`)."""
    submit: Any = adapted._connection._execute
    stale: bool = await submit(_begin, adapted._connection._conn, mode)
    return stale


async def fetch_on_connection_thread(
    adapted: Any, sql: str, parameters: Sequence[Any]
) -> list[Any]:
    """The rows of one statement on an adapted connection, in one hop."""
    outcome: _Outcome = await _on_thread(adapted._connection, sql, tuple(parameters), False)
    return outcome[3]


class _OneHopCursor:
    """The part of aiosqlite's `Cursor` that SQLAlchemy's adapter uses, one job per statement.

    The rows are fetched in the same job as the execute; `fetchall` hands them over
    without another hop and `close` has nothing left to close.
    """

    __slots__ = ("_connection", "_rows", "arraysize", "description", "lastrowid", "rowcount")

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._rows: list[Any] = []
        self.arraysize = 1
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def _run(self, sql: str, parameters: Any, many: bool) -> None:
        outcome: _Outcome = await _on_thread(self._connection, sql, parameters, many)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> None:
        await self._run(sql, parameters if parameters is not None else (), False)

    async def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        await self._run(sql, parameters, True)

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        self._rows = []


class _AdaptedCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    # Our cursor's close is synchronous: the sqlite3 cursor is closed in its job.
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _OneHopCursor(connection)

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor  # nothing to open: no hop


class _AdaptedConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _AdaptedCursor


class _OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _AdaptedConnection(self, adapted._connection)


def one_hop_dbapi() -> Any:
    """The DBAPI module to pass as `module=` for a `sqlite+aiosqlite` engine."""
    return _OneHopDBAPI(aiosqlite, sqlite3)
