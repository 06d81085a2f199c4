"""The chat-list watch (spec §5.6): per-user fan-out of chat created/updated/deleted.

No seqs and no resume: a client that reconnects re-reads `GET /api/chats`. Fed by
the store's commit listener; each watcher has a small bounded queue and is closed
when it falls behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from chatd.store import Chat
from chatd.stream.wire import chat_json
from chatd.types import encode

__all__ = ["ChatListWatch"]

# Undelivered list events per watcher before it is closed as too slow.
WATCH_QUEUE = 1000


class _Watcher:
    __slots__ = ("closed", "queue")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(WATCH_QUEUE)
        self.closed = False


class ChatListWatch:
    def __init__(self) -> None:
        self._watchers: dict[str, set[_Watcher]] = {}

    def has_watchers(self, owner_id: str) -> bool:
        return bool(self._watchers.get(owner_id))

    def publish(self, chat: Chat, kind: str | None = None) -> None:
        if kind == "chat_deleted":
            self.publish_deleted(chat.owner_id, chat.id)
            return
        if not self._watchers.get(chat.owner_id):
            return
        kind = kind or ("chat_created" if chat.snapshot_version == 1 else "chat_updated")
        self._send(chat.owner_id, kind, {"chat": chat_json(chat)})

    def publish_deleted(self, owner_id: str, chat_id: str) -> None:
        self._send(owner_id, "chat_deleted", {"chat_id": chat_id})

    def _send(self, owner_id: str, kind: str, body: dict[str, object]) -> None:
        watchers = self._watchers.get(owner_id)
        if not watchers:
            return
        frame = b"event: %s\ndata: %s\n\n" % (kind.encode(), encode(body))
        for watcher in list(watchers):
            try:
                watcher.queue.put_nowait(frame)
            except asyncio.QueueFull:
                watcher.closed = True
                watchers.discard(watcher)

    def close_all(self) -> None:
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.closed = True
                if not watcher.queue.full():
                    watcher.queue.put_nowait(None)
        self._watchers.clear()

    async def frames(self, owner_id: str, keepalive: float) -> AsyncIterator[bytes]:
        watcher = _Watcher()
        self._watchers.setdefault(owner_id, set()).add(watcher)
        try:
            while not watcher.closed:
                try:
                    async with asyncio.timeout(keepalive):
                        frame = await watcher.queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self._watchers.get(owner_id, set()).discard(watcher)
