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
import logging
import time
from collections.abc import Callable

from chatd.store import Store, StoreError
from chatd.worker.hub import StreamHub, encode_event

__all__ = ["Relay"]

log = logging.getLogger("chatd.relay")

PAGE = 500


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
        self._pulling: dict[str, bool] = {}  # a pull is running; True: go round again
        self._tasks: set[asyncio.Task[None]] = set()

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
        """Read the chat's new log rows into the hub, in the background (one at a time)."""
        if chat_id in self._pulling:
            self._pulling[chat_id] = True
            return
        if self.is_local(chat_id):
            return
        self._pulling[chat_id] = False
        task = asyncio.create_task(self._pull(chat_id), name=f"relay-{chat_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pull(self, chat_id: str) -> None:
        try:
            while True:
                await self._read(chat_id)
                if not self._pulling.get(chat_id):
                    return
                self._pulling[chat_id] = False
        except StoreError:
            return  # the chat is gone
        except Exception:
            log.warning("chat %s: relay read failed; the next poll retries", chat_id, exc_info=True)
        finally:
            self._pulling.pop(chat_id, None)

    async def _read(self, chat_id: str) -> None:
        while chat_id in self._cursor:
            after = max(self._cursor[chat_id], self.hub.newest_seq(chat_id))
            events = await self.store.read_events(chat_id, after_seq=after, limit=PAGE)
            for event in events:
                self.hub.publish(chat_id, encode_event(chat_id, event.seq, event.type, event.data))
            if chat_id in self._cursor and events:
                self._cursor[chat_id] = max(self._cursor[chat_id], events[-1].seq)
            if len(events) < PAGE:
                return

    def poll(self) -> None:
        """The periodic repair: forget unwatched chats, read those that heard nothing."""
        watched = self.hub.watched_chats()
        for chat_id in list(self._cursor):
            if chat_id not in watched:
                del self._cursor[chat_id]
                self._heard.pop(chat_id, None)
        cutoff = time.monotonic() - self.poll_interval
        for chat_id in self._cursor:
            if self._heard.get(chat_id, 0.0) < cutoff and not self.is_local(chat_id):
                self._heard[chat_id] = time.monotonic()
                self.pull(chat_id)

    def resync(self) -> None:
        """After the listener reconnected: every followed chat reads the log once."""
        for chat_id in self._cursor:
            self.pull(chat_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
