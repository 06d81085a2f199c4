"""Event rows on the hot path, written at driver level.

A streaming chat writes one `chat_stream_events` row per part (20 a second per
chat). Through SQLAlchemy's `insert` an executemany row cost ~50 µs of CPU: a dict
per row, then bind processors for the timestamp and the JSON. Here the statement
is written once per dialect, the JSON is the text the stream already encoded when
it published the event, and the timestamp is converted once per batch: a row is a
tuple the driver binds itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store._models import StreamEvent
from chatd.store._nul import encode_json_text
from chatd.store._schema import chat_stream_events

__all__ = [
    "EVENT_COLUMNS",
    "Row",
    "driver_timestamp",
    "event_rows",
    "insert_event_rows",
    "lock_fences",
]

#: The columns of an event row, in `Row` order (the log and its tail alike).
EVENT_COLUMNS = "chat_id, seq, type, data, created_at"
_MARKS = {"sqlite": "?, ?, ?, ?, ?", "postgresql": "$1, $2, $3, $4, $5"}
_encoder = msgspec.json.Encoder()

Row = tuple[str, int, str, str, Any]


def event_rows(chat_id: str, events: Iterable[StreamEvent], created_at: Any) -> list[Row]:
    """Rows for `insert_event_rows`; `created_at` as `driver_timestamp` made it."""
    return [
        (
            chat_id,
            e.seq,
            e.type,
            (e.encoded if e.encoded is not None else _encoder.encode(e.data)).decode(),
            created_at,
        )
        for e in events
    ]


def driver_timestamp(conn: AsyncConnection, now: datetime) -> Any:
    """`now` as the driver binds `created_at` (text on SQLite, aware on PostgreSQL)."""
    process = chat_stream_events.c.created_at.type.bind_processor(conn.dialect)
    return process(now) if process is not None else now


async def insert_event_rows(
    conn: AsyncConnection, rows: Sequence[Row], table: str = "chat_stream_events"
) -> None:
    """Insert into the log (or, with `table="chat_stream_tail"`, into its tail)."""
    if rows:
        if conn.dialect.name == "postgresql":  # the driver's own JSON text skips `_nul`
            rows = [(c, seq, t, encode_json_text(data), at) for c, seq, t, data, at in rows]
        sql = f"INSERT INTO {table} ({EVENT_COLUMNS}) VALUES ({_MARKS[conn.dialect.name]})"
        await conn.exec_driver_sql(sql, list(rows))


_FENCE_COLUMNS = "id, runner_id, lease_epoch, seq_reserved"


async def lock_fences(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, tuple[Any, int, int]]:
    """`(runner_id, lease_epoch, seq_reserved)` of each chat, locked for the transaction.

    Raw rows (no SQLAlchemy row processing): a replica's flush checks every
    streaming chat's fence 20 times a second.
    """
    if not ids:
        return {}
    if conn.dialect.name == "sqlite":  # BEGIN IMMEDIATE already excludes other writers
        marks = ", ".join("?" * len(ids))
        sql = f"SELECT {_FENCE_COLUMNS} FROM chats WHERE id IN ({marks})"
        result = await conn.exec_driver_sql(sql, tuple(ids))
    else:
        sql = f"SELECT {_FENCE_COLUMNS} FROM chats WHERE id = ANY($1) FOR UPDATE"
        result = await conn.exec_driver_sql(sql, (list(ids),))
    rows: list[Sequence[Any]] = list(result.all())
    return {row[0]: (row[1], row[2], row[3]) for row in rows}
