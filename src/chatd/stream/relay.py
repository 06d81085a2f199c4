"""The relay: events another replica wrote, brought into this replica's hub (spec §5.7).

A chat's owner publishes its events into its own hub at once; every other replica
with watchers for that chat learns of them from the durable log. The owner's
flush NOTIFYs `chatd_events` with the newest seq it wrote; the relay then reads
the rows after what its hub already has and publishes them with the same seqs,
so a watcher on any replica sees the same stream and resumes the same way. A
chat's watchers that heard nothing for a poll interval read the log anyway (a
notification can be lost), and a reconnected listener makes every followed chat
read once.

The relay never reads for chats this replica owns (their events are already in
the hub) and forgets chats that no longer have watchers here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

from chatd.store import Store
from chatd.stream.hub import StreamHub, encode_event

__all__ = ["Relay"]

log = logging.getLogger("chatd.relay")

# Rows per read; a read that fills it is followed by another from the new cursors.
PAGE = 5000
# Chats per read (one OR'ed condition each).
CHATS_PER_READ = 200


class Relay:
    def __init__(
        self,
        store: Store,
        hub: StreamHub,
        is_local: Callable[[str], bool],
        poll_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.hub = hub
        self.is_local = is_local
        self.poll_interval = poll_interval
        self._cursor: dict[str, int] = {}  # the newest seq read from the log, per chat
        self._heard: dict[str, float] = {}  # when the chat last had news (monotonic)
        self._dirty: set[str] = set()  # chats whose log has rows the hub may not have
        self._task: asyncio.Task[None] | None = None

    async def follow(self, chat_id: str) -> None:
        """Start relaying a chat (a watcher just subscribed here).

        Call after the watcher is registered: the relay then starts at the log's
        head as it is now, and the watcher's own backlog read covers everything
        up to there.
        """
        if chat_id in self._cursor:
            return
        newest = self.hub.newest_seq(chat_id)
        self._cursor[chat_id] = newest or await self.store.last_event_seq(chat_id)
        self._heard[chat_id] = time.monotonic()

    def on_events(self, chat_id: str, newest_seq: int) -> None:
        """A `chatd_events` notification: `chat_id`'s log now reaches `newest_seq`."""
        cursor = self._cursor.get(chat_id)
        if cursor is None:
            return
        self._heard[chat_id] = time.monotonic()
        if newest_seq > max(cursor, self.hub.newest_seq(chat_id)):
            self.pull(chat_id)

    def pull(self, chat_id: str) -> None:
        """Read the chat's new log rows into the hub soon.

        Chats marked while a read runs are read together by the next one: one query
        for every chat that has news, however many notifications arrived.
        """
        if chat_id not in self._cursor or self.is_local(chat_id):
            return
        self._dirty.add(chat_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="chatd-relay")

    async def _drain(self) -> None:
        while self._dirty:
            chosen = list(itertools.islice(self._dirty, CHATS_PER_READ))
            self._dirty.difference_update(chosen)
            batch = {
                chat_id: max(self._cursor[chat_id], self.hub.newest_seq(chat_id))
                for chat_id in chosen
                if chat_id in self._cursor
            }
            try:
                rows = await self.store.read_new_events(batch, limit=PAGE)
            except Exception:
                log.warning("relay read failed; the next poll retries", exc_info=True)
                return
            for chat_id, event in rows:
                self.hub.publish(chat_id, encode_event(chat_id, event.seq, event.type, event.data))
                if chat_id in self._cursor and event.seq > self._cursor[chat_id]:
                    self._cursor[chat_id] = event.seq
            if len(rows) >= PAGE:
                self._dirty.update(batch)  # some chats may have more rows

    def poll(self) -> None:
        """The periodic repair: forget unwatched chats, read those that heard nothing."""
        watched = self.hub.watched_chats()
        for chat_id in list(self._cursor):
            if chat_id not in watched:
                del self._cursor[chat_id]
                self._heard.pop(chat_id, None)
        cutoff = time.monotonic() - self.poll_interval
        for chat_id in self._cursor:
            if self._heard.get(chat_id, 0.0) < cutoff:
                self._heard[chat_id] = time.monotonic()
                self.pull(chat_id)

    def resync(self) -> None:
        """After the listener reconnected: every followed chat reads the log once."""
        for chat_id in self._cursor:
            self.pull(chat_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
