"""The bare-driver floor of a step commit and an incremental history load.

The same statements `Store.commit_step` and `Store.load_history(after_position=...)`
run — lock the chat row, find the last assistant message, insert the step's two
messages, bump the chat row; read the history versions and the new rows in one joined
statement, decode their parts — written by hand against the async driver chatd runs
on (aiosqlite, asyncpg) with nothing in between: no SQLAlchemy, no fences, no typed
rows. What the store costs beyond this is the price of its layers.
"""

from __future__ import annotations

import datetime
from typing import Any

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
import msgspec

PARTS = msgspec.json.encode(
    [
        {"type": "text", "text": "Checking the time."},
        {"type": "tool_call", "tool_call_id": "call", "tool_name": "clock", "input": "{}"},
    ]
).decode()
RESULT = msgspec.json.encode(
    [{"type": "tool_result", "tool_call_id": "call", "tool_name": "clock", "output": "12:00"}]
).decode()
_COLUMNS = (
    "id, chat_id, position, role, kind, parts, visibility, compressed, deleted, revision, "
    "step_id, run_id, input_tokens, output_tokens, total_tokens, context_limit, runtime_ms, "
    "created_at"
)
_LAST_ASSISTANT = (
    "SELECT role, parts FROM chat_messages WHERE chat_id = {0} AND position >= "
    "(SELECT position FROM chat_messages WHERE chat_id = {0} AND role = 'assistant' "
    "AND deleted = {1} AND kind IS NULL ORDER BY position DESC LIMIT 1) "
    "AND deleted = {1} ORDER BY position"
)
_NEW_ROWS = (
    "SELECT c.history_version, c.history_reset_version, m.position, m.role, m.parts, m.kind "
    "FROM chats c LEFT JOIN chat_messages m ON m.chat_id = c.id AND m.position > {1} "
    "AND m.deleted = {2} AND m.compressed = {2} AND m.visibility != 'user' "
    "WHERE c.id = {0} ORDER BY m.position"
)


def _rows(chat_id: str, position: int, version: int, n: int, now: Any) -> list[tuple[Any, ...]]:
    base = f"{chat_id[:24]}{n:011d}"  # ids as UUIDs: 24 characters, 12 hex digits
    step = f"{base}0"
    common = ("both", 0, 0, version, step, chat_id)
    usage, none = (120, 12, 132, 128_000, 400), (None,) * 5
    return [
        (f"{base}a", chat_id, position + 1, "assistant", None, PARTS, *common, *usage, now),
        (f"{base}b", chat_id, position + 2, "tool", None, RESULT, *common, *none, now),
    ]


class SqliteFloor:
    """One aiosqlite connection, as chatd opens them (WAL, synchronous=NORMAL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            await self.conn.execute(f"PRAGMA {pragma}")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def commit(self, chat_id: str, position: int, n: int) -> int:
        conn = self.conn
        assert conn is not None
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat(" ")
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("SELECT * FROM chats WHERE id = ?", (chat_id,)) as cursor:
                chat = await cursor.fetchone()
                assert chat is not None
                names = [d[0] for d in cursor.description]
            version = chat[names.index("history_version")] + 1
            async with conn.execute(_LAST_ASSISTANT.format("?", 0), (chat_id, chat_id)) as cursor:
                await cursor.fetchall()
            marks = ", ".join("?" * 18)
            await conn.executemany(
                f"INSERT INTO chat_messages ({_COLUMNS}) VALUES ({marks})",
                _rows(chat_id, position, version, n, now),
            )
            await conn.execute(
                "UPDATE chats SET snapshot_version = ?, history_version = ?, last_position = ?, "
                "updated_at = ? WHERE id = ?",
                (version, version, position + 2, now, chat_id),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        return position + 2

    async def load(self, chat_id: str, position: int) -> int:
        conn = self.conn
        assert conn is not None
        async with conn.execute(_NEW_ROWS.format("?", "?", 0), (position, chat_id)) as cursor:
            rows = await cursor.fetchall()
        return len([msgspec.json.decode(row[4]) for row in rows if row[2] is not None])


class PostgresFloor:
    """One asyncpg connection over the cluster's unix socket."""

    def __init__(self, host: str, user: str, database: str) -> None:
        self.args = {"host": host, "user": user, "database": database}
        self.conn: asyncpg.Connection | None = None

    async def open(self) -> None:
        self.conn = await asyncpg.connect(**self.args)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def commit(self, chat_id: str, position: int, n: int) -> int:
        conn = self.conn
        assert conn is not None
        now = datetime.datetime.now(datetime.UTC)
        async with conn.transaction():
            chat = await conn.fetchrow("SELECT * FROM chats WHERE id = $1 FOR UPDATE", chat_id)
            assert chat is not None
            version = chat["history_version"] + 1
            await conn.fetch(_LAST_ASSISTANT.format("$1", "false"), chat_id)
            marks = ", ".join(f"${i}" for i in range(1, 19))
            rows = [
                (*row[:7], bool(row[7]), bool(row[8]), *row[9:])
                for row in _rows(chat_id, position, version, n, now)
            ]
            await conn.executemany(f"INSERT INTO chat_messages ({_COLUMNS}) VALUES ({marks})", rows)
            await conn.execute(
                "UPDATE chats SET snapshot_version = $1, history_version = $1, "
                "last_position = $2, updated_at = $3 WHERE id = $4",
                version,
                position + 2,
                now,
                chat_id,
            )
        return position + 2

    async def load(self, chat_id: str, position: int) -> int:
        conn = self.conn
        assert conn is not None
        rows = await conn.fetch(_NEW_ROWS.format("$1", "$2", "false"), chat_id, position)
        return len([msgspec.json.decode(row["parts"]) for row in rows if row["position"]])
