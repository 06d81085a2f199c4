"""Reads: chats, lists, history for clients and for the model, queue, stream events.

Reads never lock and never write. `load_history(after_position=n)` is how a
worker that already holds a chat reads only what is new (an index range scan),
so loading history for the next step does not grow with its length;
`chat_details(chat)` is everything a chat's full resource needs beyond its row, in
one connection, skipping what the row says is empty.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from chatd.store._agents import read_children
from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._files import load_file_data
from chatd.store._models import (
    Chat,
    ChatDetails,
    History,
    ModelConfig,
    Page,
    QueuedMessage,
    StoredMessage,
    StreamEvent,
    Visibility,
)
from chatd.store._schema import (
    chat_messages,
    chat_queued_messages,
    chat_stream_events,
    chat_stream_tail,
    chats,
    model_configs,
)
from chatd.store._tx import chat_from_row, message_from_row, queued_from_row
from chatd.types import MESSAGE_KIND_SUMMARY, Message, MessagePart, Role, SourcePart

__all__ = ["Reads"]

# 500 rows: one page of the durable event log (spec §5.4).
EVENT_PAGE = 500
# The token counters `usage_totals` adds up (spec §4.10), each 0 when no step counted it.
_USAGE_COUNTERS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "reasoning_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
)


def _model_parts(parts: list[MessagePart]) -> list[MessagePart]:
    # Sources are kept for display but never sent back to a model.
    return [part for part in parts if not isinstance(part, SourcePart)]


def encode_cursor(chat: Chat) -> str:
    raw = f"{chat.updated_at.isoformat()}|{chat.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, chat_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), chat_id
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidRequest("invalid_request", "The cursor is not valid.") from err


# `load_history`'s statement, on the driver itself (kept in step with the schema:
# tests/store/test_history_statement.py compares it with the SQLAlchemy query it
# replaced, on both engines).
_NEW_MESSAGES = (
    "SELECT c.history_version, c.history_reset_version, m.position, m.role, m.parts, m.kind "
    "FROM chats c LEFT JOIN chat_messages m ON m.chat_id = c.id AND m.position > {0} "
    "AND m.deleted = {2} AND m.compressed = {2} AND m.visibility != 'user' "
    "WHERE c.id = {1} ORDER BY m.position"
)
_NEW_MESSAGES_SQLITE = _NEW_MESSAGES.format("?", "?", 0)
_NEW_MESSAGES_POSTGRES = _NEW_MESSAGES.format("$1", "$2", "false")
_PARTS = msgspec.json.Decoder(list[MessagePart])


def _sqlite_parts(text: str) -> list[MessagePart]:
    return _PARTS.decode(text)


def _postgres_parts(value: Any) -> list[MessagePart]:
    # jsonb comes through the engine's deserializer (`_nul.decode_json`) as builtins.
    return msgspec.convert(value, list[MessagePart])


class Reads(StoreBase):
    async def get_chat(self, chat_id: str, *, owner_id: str | None = None) -> Chat:
        """The chat; `NotFound` also when `owner_id` is given and is not its owner."""
        query = sa.select(chats).where(chats.c.id == chat_id)
        if owner_id is not None:
            query = query.where(chats.c.owner_id == owner_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound("chat", chat_id)
        return chat_from_row(row)

    async def get_chats(self, chat_ids: Collection[str]) -> list[Chat]:
        """Several chats in one query (any owner); missing ids are left out."""
        if not chat_ids:
            return []
        query = sa.select(chats).where(chats.c.id.in_(list(chat_ids)))
        async with self.db.read() as conn:
            return [chat_from_row(row) for row in (await conn.execute(query)).mappings()]

    async def list_chats(
        self,
        owner_id: str,
        *,
        archived: bool | None = False,
        limit: int = 50,
        cursor: str | None = None,
        title_contains: str | None = None,
    ) -> Page:
        """The owner's chats, most recently updated first, `limit` per page.

        `archived=None` lists archived and active chats alike; `title_contains` keeps
        chats whose title contains the text, ignoring case.
        """
        c = chats.c
        query = (
            sa.select(chats)
            .where(c.owner_id == owner_id)
            .order_by(c.updated_at.desc(), c.id.desc())
            .limit(limit + 1)
        )
        if archived is not None:
            query = query.where(c.archived == archived)
        if title_contains:
            escaped = title_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(c.title.ilike(f"%{escaped}%", escape="\\"))
        if cursor is not None:
            updated_at, chat_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    c.updated_at < updated_at,
                    sa.and_(c.updated_at == updated_at, c.id < chat_id),
                )
            )
        async with self.db.read() as conn:
            items = [chat_from_row(row) for row in (await conn.execute(query)).mappings()]
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(items[-1]) if more else None)

    async def list_messages(
        self,
        chat_id: str,
        *,
        include_hidden: bool = False,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """What the user sees, in position order.

        Model-only rows (summaries, clear markers) are never listed; compressed and
        soft-deleted rows only with `include_hidden` (flagged on the row).
        """
        query = _user_messages(chat_id, include_hidden=include_hidden)
        query = query.where(chat_messages.c.position > after_position)
        if limit is not None:
            query = query.limit(limit)
        async with self.db.read() as conn:
            return [message_from_row(row) for row in (await conn.execute(query)).mappings()]

    async def list_all_messages(self, chat_id: str) -> list[StoredMessage]:
        """Every row of the chat's history, hidden or not (operators, debugging, tests)."""
        m = chat_messages.c
        query = sa.select(chat_messages).where(m.chat_id == chat_id).order_by(m.position)
        async with self.db.read() as conn:
            return [message_from_row(row) for row in (await conn.execute(query)).mappings()]

    async def load_history(self, chat_id: str, *, after_position: int = 0) -> History:
        """The model's view: live, uncompressed, model-visible messages after a position.

        A worker passes the `last_position` of its previous read to get only what is
        new; when the chat's `history_reset_version` moved past the version it read
        (edit, clear, compaction), it must reload from 0.
        """
        # One statement on the driver itself (the worker's hottest read): the chat's
        # versions joined to what is new (nothing new: one row of NULL message columns;
        # no chat: no row).
        async with self.db.read() as conn:
            rows = await self.db.fetch_raw(
                conn, _NEW_MESSAGES_SQLITE, _NEW_MESSAGES_POSTGRES, (after_position, chat_id)
            )
            if not rows:
                raise NotFound("chat", chat_id)
            head = rows[0]
            decode = _sqlite_parts if self.db.is_sqlite else _postgres_parts
            messages = []
            last_position = after_position
            for _, _, position, role, parts, kind in rows:
                if position is None:
                    continue
                last_position = position
                content = _model_parts(decode(parts))
                if content:
                    # A compaction summary keeps its kind, so the next compaction
                    # replaces it rather than keeping it as a system prompt.
                    summary = kind == MESSAGE_KIND_SUMMARY
                    messages.append(Message(Role(role), content, kind=kind if summary else ""))
            messages = await load_file_data(conn, chat_id, messages)
        return History(
            chat_id=chat_id,
            messages=messages,
            last_position=last_position,
            history_version=head[0],
            history_reset_version=head[1],
        )

    async def usage_totals(self, chat_id: str) -> dict[str, int | None]:
        """Token and cost totals of every step the chat ran (spec §4.10).

        Counts hidden (compressed or edited-away) messages too: their tokens were
        spent. `cost_micros` is None when no step had a known cost.
        """
        async with self.db.read() as conn:
            row = (await conn.execute(_usage_sums(chat_id))).mappings().one()
        return _usage_of(row)

    async def list_queued_messages(self, chat_id: str) -> list[QueuedMessage]:
        """The queue, head first."""
        async with self.db.read() as conn:
            return [queued_from_row(r) for r in (await conn.execute(_queue(chat_id))).mappings()]

    async def chat_details(
        self, chat: Chat, *, model_config: ModelConfig | None = None
    ) -> ChatDetails:
        """What the chat's full resource shows beyond `chat`, in one connection.

        Its model config (or the default's, when the chat names none) and its usage
        totals come from one statement; the queue and the messages (only while the chat
        waits for client tools) from one each. What `chat` says is empty is not read:
        no queue when `queue_length` is 0, no messages without a requires-action
        deadline, no usage before its first step (snapshot version 1), and no model
        config when the caller passes the chat's own as `model_config`. A chat with
        nothing to read opens no connection.
        """
        known = model_config is not None and model_config.id == chat.model_config_id
        config = model_config if known else None
        # A chat just created has run no step: nothing to add up.
        count_usage = chat.snapshot_version > 1
        # Children are spawned by a run with built-in tools (the agent tools come with
        # them): a chat that never ran, has none, or is a child itself has no children.
        has_children = (
            count_usage and chat.parent_id is None and bool((chat.tool_config or {}).get("builtin"))
        )
        usage = _usage_of(None)
        queue: list[QueuedMessage] = []
        messages: list[StoredMessage] = []
        children: list[Chat] = []
        query = _usage_and_config(chat, usage=count_usage, config=not known)
        if query is None and not chat.queue_length and chat.requires_action_deadline_at is None:
            return ChatDetails(queue=queue, model_config=config, messages=messages, usage=usage)
        async with self.db.read() as conn:
            if has_children:
                children = await read_children(conn, chat.id)
            if query is not None:
                row = (await conn.execute(query)).mappings().first()
                if row is not None and count_usage:
                    usage = _usage_of(row)
                if row is not None and not known and row[model_configs.c.id] is not None:
                    config = ModelConfig(**{c.name: row[c] for c in model_configs.c})
            if chat.queue_length:
                rows = await conn.execute(_queue(chat.id))
                queue = [queued_from_row(r) for r in rows.mappings()]
            if chat.requires_action_deadline_at is not None:
                rows = await conn.execute(_user_messages(chat.id))
                messages = [message_from_row(r) for r in rows.mappings()]
        return ChatDetails(
            queue=queue, model_config=config, messages=messages, usage=usage, children=children
        )

    async def read_new_events(
        self, cursors: Mapping[str, int], *, limit: int = 5000
    ) -> list[tuple[str, StreamEvent]]:
        """Several chats' durable events after each one's cursor, in one query.

        Rows come ordered by chat, then seq, at most `limit` of them; when exactly
        `limit` come back, some chats may have more (ask again from the new cursors).
        """
        if not cursors:
            return []
        log = _stream_log(
            lambda c: sa.or_(*(sa.and_(c.chat_id == cid, c.seq > n) for cid, n in cursors.items()))
        )
        query = (
            sa.select(log.c.chat_id, log.c.seq, log.c.type, log.c.data)
            .order_by(log.c.chat_id, log.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = await conn.execute(query)
            return [
                (chat_id, StreamEvent(seq=seq, type=type_, data=data))
                for chat_id, seq, type_, data in rows
            ]

    async def read_events(
        self, chat_id: str, *, after_seq: int = 0, limit: int = EVENT_PAGE
    ) -> list[StreamEvent]:
        """Durable stream events with `seq > after_seq`, in seq order."""
        log = _stream_log(lambda c: sa.and_(c.chat_id == chat_id, c.seq > after_seq))
        query = sa.select(log.c.seq, log.c.type, log.c.data).order_by(log.c.seq).limit(limit)
        async with self.db.read() as conn:
            rows = await conn.execute(query)
            return [StreamEvent(seq=seq, type=type_, data=data) for seq, type_, data in rows]


def _user_messages(chat_id: str, *, include_hidden: bool = False) -> sa.Select[Any]:
    """The rows `list_messages` shows, in position order."""
    m = chat_messages.c
    query = (
        sa.select(chat_messages)
        .where(m.chat_id == chat_id, m.visibility != Visibility.MODEL)
        .order_by(m.position)
    )
    return query if include_hidden else query.where(~m.deleted, ~m.compressed)


def _queue(chat_id: str) -> sa.Select[Any]:
    q = chat_queued_messages.c
    return sa.select(chat_queued_messages).where(q.chat_id == chat_id).order_by(q.position)


def _usage_sums(chat_id: str) -> sa.Select[Any]:
    """One row: the chat's usage counters summed, and its cost (NULL when none known).
    Hidden (compressed or edited-away) messages count too: their tokens were spent."""
    m = chat_messages.c
    return sa.select(
        *(sa.func.coalesce(sa.func.sum(m[name]), 0).label(name) for name in _USAGE_COUNTERS),
        sa.func.sum(m.cost_micros).label("cost_micros"),
    ).where(m.chat_id == chat_id)


def _usage_of(row: Mapping[Any, Any] | None) -> dict[str, int | None]:
    """`_usage_sums`'s row as totals; no row: the totals of a chat that ran no step."""
    totals: dict[str, int | None] = {
        name: 0 if row is None else int(row[name]) for name in _USAGE_COUNTERS
    }
    cost = None if row is None else row["cost_micros"]
    totals["cost_micros"] = None if cost is None else int(cost)
    return totals


def _usage_and_config(chat: Chat, *, usage: bool, config: bool) -> sa.Select[Any] | None:
    """One statement for the chat's usage sums and/or its model config's row (the
    default's when the chat names none): the sums left-joined to the config, whose
    columns are then NULL when it is gone. None when neither is wanted."""
    c = model_configs.c
    which = c.is_default if chat.model_config_id is None else c.id == chat.model_config_id
    if not config:
        return _usage_sums(chat.id) if usage else None
    if not usage:
        return sa.select(model_configs).where(which)
    sums = _usage_sums(chat.id).subquery("usage")
    return sa.select(sums, model_configs).select_from(sums.outerjoin(model_configs, which))


def _stream_log(where: Callable[[Any], sa.ColumnElement[bool]]) -> sa.Subquery:
    """The durable log as one relation: `chat_stream_events` and its tail (SQLite's
    unfolded flushes), read in one statement so a row being folded is seen once.
    `where(columns)` filters each part, so the log's `(chat_id, seq)` key serves it."""
    parts = [
        sa.select(t.c.chat_id, t.c.seq, t.c.type, t.c.data).where(where(t.c))
        for t in (chat_stream_events, chat_stream_tail)
    ]
    return sa.union_all(*parts).subquery("stream_log")
