"""The stream of a chat no runner owns, kept up to date by the store's seq authority.

When a chat has no owner (idle, pending, waiting for client tools), its derived
events are numbered and written by `Store.sync_unowned_events` under the chat's
row lock, then published to this replica's hub.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chatd.store import Store, StoreError
from chatd.stream.events import derive_unowned
from chatd.stream.hub import StreamHub
from chatd.stream.log import hub_event

__all__ = ["UnownedSync"]

log = logging.getLogger("chatd.worker")


class UnownedSync:
    def __init__(
        self,
        store: Store,
        hub: StreamHub,
        wake: asyncio.Event,
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.store = store
        self.hub = hub
        self.wake = wake
        self.spawn = spawn
        self._syncing: dict[str, bool] = {}
        self._pending: set[str] = set()

    def request(self, chat_id: str, *, pending: bool = False) -> None:
        """Bring an unowned chat's stream up to date, in the background.

        At most one sync per chat runs at a time; a request while one runs makes it
        go round once more, so the last change is never missed. The task belongs to
        the worker, not to a runner, so a runner being cancelled cannot drop it.
        `pending`: the chat waits to be claimed, so wake the acquisition after.
        """
        if pending:
            self._pending.add(chat_id)
        if chat_id in self._syncing:
            self._syncing[chat_id] = True
            return
        self._syncing[chat_id] = False
        self.spawn(self._sync(chat_id))

    async def _sync(self, chat_id: str) -> None:
        try:
            while True:
                # Requests made before this read starts are answered by it.
                self._syncing[chat_id] = False
                try:
                    events = await self.store.sync_unowned_events(chat_id, derive_unowned)
                except StoreError:
                    return  # deleted meanwhile
                except Exception:
                    log.exception("chat %s: stream sync failed", chat_id)
                    return
                for event in events:
                    self.hub.publish(chat_id, hub_event(chat_id, event))
                if chat_id in self._pending:
                    # The sync held the row lock of a pending chat, which an acquisition
                    # running meanwhile skipped (SKIP LOCKED): look again now.
                    self._pending.discard(chat_id)
                    self.wake.set()
                if not self._syncing.get(chat_id):
                    return
        finally:
            self._syncing.pop(chat_id, None)
            self._pending.discard(chat_id)
