"""The durable stream log's writes outside a lease: events of chats nobody owns.

A transition that leaves a chat unowned (an API call on an idle chat, or a worker
giving the chat up) does not number events itself; right after it, the service
calls `sync_unowned_events`, which — under the chat row lock, and only while the
chat is still unowned — asks a derivation callback (the worker's, which knows
the event vocabulary) for the missing events, numbers them above `seq_reserved`
and inserts them. The store never decides which events exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from chatd.store._base import StoreBase
from chatd.store._models import Chat, ChatStatus, QueuedMessage, StoredMessage, StreamEvent
from chatd.store._rows import (
    EVENT_COLUMNS,
    Row,
    driver_timestamp,
    event_rows,
    insert_event_rows,
    lock_fences,
)
from chatd.store._schema import chat_messages, chat_stream_events, chat_stream_tail, chats
from chatd.store._tx import Fence, message_from_row

__all__ = ["Derive", "EventSync"]

# (chat, emitted_state, messages changed since, queue or None, history for pending
# calls when requires_action) -> (event drafts, new emitted_state)
Derive = Callable[
    [
        Chat,
        dict[str, Any] | None,
        list[StoredMessage],
        list[QueuedMessage] | None,
        list[StoredMessage],
    ],
    tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]],
]


# Where a replica's batch flush inserts: SQLite's go through the tail.
_FLUSH_TABLE = {"sqlite": "chat_stream_tail", "postgresql": "chat_stream_events"}


class EventSync(StoreBase):
    async def messages_changed_since(self, chat_id: str, revision: int) -> list[StoredMessage]:
        """Messages inserted or changed after `revision`, in position order."""
        m = chat_messages.c
        query = (
            sa.select(chat_messages)
            .where(m.chat_id == chat_id, m.revision > revision)
            .order_by(m.position)
        )
        async with self.db.read() as conn:
            return [message_from_row(r) for r in (await conn.execute(query)).mappings()]

    async def recent_messages(self, chat_id: str, limit: int = 50) -> list[StoredMessage]:
        """The newest live messages (for pending tool calls), oldest first."""
        m = chat_messages.c
        query = (
            sa.select(chat_messages)
            .where(m.chat_id == chat_id, ~m.deleted, ~m.compressed)
            .order_by(m.position.desc())
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = [message_from_row(r) for r in (await conn.execute(query)).mappings()]
        return rows[::-1]

    async def sync_unowned_events(self, chat_id: str, derive: Derive) -> list[StreamEvent]:
        """Number and insert the events an unowned chat's watchers have not seen yet.

        Returns the inserted events (for the local hub); nothing when the chat is
        owned — its runner derives its own events — or nothing changed.
        """
        async with self._transition(chat_id, "sync_events") as tx:
            if tx.row["runner_id"] is not None:
                return []
            chat = tx.chat
            emitted: dict[str, Any] | None = tx.row["emitted_state"]
            since = int(emitted.get("history_version", 0)) if emitted else 0
            m = chat_messages.c
            changed = [
                message_from_row(r)
                for r in (
                    await tx.conn.execute(
                        sa.select(chat_messages)
                        .where(m.chat_id == chat_id, m.revision > since)
                        .order_by(m.position)
                    )
                ).mappings()
            ]
            queue_changed = not emitted or emitted.get("queue_version") != chat.queue_version
            queue = await tx.queue() if queue_changed else None
            history: list[StoredMessage] = []
            if chat.status == ChatStatus.REQUIRES_ACTION:
                history = [
                    message_from_row(r)
                    for r in (
                        await tx.conn.execute(
                            sa.select(chat_messages)
                            .where(m.chat_id == chat_id, ~m.deleted, ~m.compressed)
                            .order_by(m.position.desc())
                            .limit(50)
                        )
                    ).mappings()
                ][::-1]
            drafts, new_state = derive(chat, emitted, changed, queue, history)
            seq = int(tx.row["seq_reserved"])
            events = []
            for type_, data in drafts:
                seq += 1
                events.append(StreamEvent(seq=seq, type=type_, data=data))
            if events:
                await insert_event_rows(
                    tx.conn, event_rows(chat_id, events, driver_timestamp(tx.conn, tx.now))
                )
                tx.last_event_seq = seq
            if events or new_state != emitted:
                await tx.conn.execute(
                    sa.update(chats)
                    .where(chats.c.id == chat_id)
                    .values(seq_reserved=seq, emitted_state=new_state)
                )
            return events

    async def append_events_batch(
        self, batches: Sequence[tuple[Fence, Sequence[StreamEvent], dict[str, Any] | None]]
    ) -> set[str]:
        """Many owners' event flushes in one transaction (spec §5.5: one per replica).

        Each batch is written only while its fence still holds; returns the ids of
        chats whose fence did not (their events are discarded, never written late).
        """
        if not batches:
            return set()
        stale: set[str] = set()
        c = chats.c
        block = self.config.seq_block
        now = self.clock()
        async with self.db.write() as conn:
            ids = [fence.chat_id for fence, _, _ in batches]
            fences = await lock_fences(conn, ids)
            stamp = driver_timestamp(conn, now)
            inserts: list[Row] = []
            reserve: list[dict[str, Any]] = []
            for fence, events, state in batches:
                held = fences.get(fence.chat_id)
                if held is None or held[:2] != (fence.runner_id, fence.lease_epoch):
                    stale.add(fence.chat_id)
                    continue
                inserts += event_rows(fence.chat_id, events, stamp)
                seq_reserved = held[2]
                if events and events[-1].seq > seq_reserved - block // 2:
                    reserve.append({"id_": fence.chat_id, "reserved_": seq_reserved + block})
                if state is not None:
                    await conn.execute(
                        sa.update(chats)
                        .where(c.id == fence.chat_id)
                        .values(emitted_state=dict(state))
                    )
            if reserve:
                await conn.execute(
                    sa.update(chats)
                    .where(c.id == sa.bindparam("id_"))
                    .values(seq_reserved=sa.bindparam("reserved_")),
                    reserve,
                )
            # SQLite: into the append-only tail (see `fold_event_tail`).
            await insert_event_rows(conn, inserts, table=_FLUSH_TABLE[conn.dialect.name])
        self._events_written(
            [
                (fence.chat_id, events[-1].seq)
                for fence, events, _ in batches
                if events and fence.chat_id not in stale
            ]
        )
        return stale

    async def fold_event_tail(self) -> int:
        """Move the tail's rows into `chat_stream_events`, in chat order; returns how many.

        SQLite's batch flushes append to `chat_stream_tail` (integer key, no per-chat
        index): 1,000 streaming chats' rows of one flush fill a few adjacent pages,
        where inserting them into the `(chat_id, seq)` log touches one page per chat.
        Folded about once a second, each chat's rows of that second go in together.
        One transaction; readers read both tables in one statement, so a row is
        never seen twice nor missed while it moves. No-op on PostgreSQL.
        """
        if not self.db.is_sqlite:
            return 0
        t = chat_stream_tail.c
        async with self.db.write() as conn:
            top = await conn.scalar(sa.select(sa.func.max(t.id)))
            if top is None:
                return 0
            moved = (
                await conn.exec_driver_sql(
                    f"INSERT OR IGNORE INTO chat_stream_events ({EVENT_COLUMNS}) "
                    f"SELECT {EVENT_COLUMNS} FROM chat_stream_tail WHERE id <= ? "
                    "ORDER BY chat_id, seq",
                    (top,),
                )
            ).rowcount
            await conn.exec_driver_sql("DELETE FROM chat_stream_tail WHERE id <= ?", (top,))
        return int(moved)

    async def prune_events(self, retain: int, *, changed_since: datetime | None = None) -> int:
        """The janitor (spec §5.5): keep each chat's newest `retain` events, delete the rest.

        Only chats updated since `changed_since` are looked at (all when None). Raises
        each pruned chat's `pruned_through_seq`, so a resume below it gets a
        `history_reset`. One short transaction per pruned chat; returns how many.
        """
        c, e = chats.c, chat_stream_events.c
        query = sa.select(c.id)
        if changed_since is not None:
            query = query.where(c.updated_at >= changed_since)
        async with self.db.read() as conn:
            chat_ids = list((await conn.execute(query)).scalars())
        pruned = 0
        for chat_id in chat_ids:
            async with self.db.write() as conn:
                cutoff = await conn.scalar(
                    sa.select(e.seq)
                    .where(e.chat_id == chat_id)
                    .order_by(e.seq.desc())
                    .offset(retain)
                    .limit(1)
                )
                if cutoff is None:
                    continue
                await conn.execute(
                    sa.delete(chat_stream_events).where(e.chat_id == chat_id, e.seq <= cutoff)
                )
                await conn.execute(
                    sa.update(chats)
                    .where(c.id == chat_id, c.pruned_through_seq < cutoff)
                    .values(pruned_through_seq=cutoff)
                )
            pruned += 1
        return pruned

    async def stream_bounds(self, chat_id: str) -> tuple[int, int]:
        """(pruned_through_seq, seq_reserved): what a resuming watcher can still get."""
        c = chats.c
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(c.pruned_through_seq, c.seq_reserved).where(c.id == chat_id)
                )
            ).first()
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    async def last_event_seq(self, chat_id: str) -> int:
        e, t = chat_stream_events.c, chat_stream_tail.c
        newest = sa.union_all(
            sa.select(sa.func.max(e.seq).label("seq")).where(e.chat_id == chat_id),
            sa.select(sa.func.max(t.seq).label("seq")).where(t.chat_id == chat_id),
        ).subquery()
        async with self.db.read() as conn:
            value = await conn.scalar(sa.select(sa.func.max(newest.c.seq)))
        return int(value or 0)
