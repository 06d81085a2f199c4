"""Other replicas' commits, heard as PostgreSQL notifications (spec §5.7).

A notification is a hint, never the truth: the versions and seqs it names decide
whether this replica reads anything. Wake-ups start an acquisition, event seqs go to
the relay, a changed chat is re-read (one read at a time per chat) and handed to its
runner and the list watchers, a deletion ends the chat's streams here. A reconnected
listener lost what was sent meanwhile, so it catches up: the relay re-polls and the
owned chats are re-read, as the periodic sync also does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chatd.store import Chat, ChatStatus, Store
from chatd.stream.hub import StreamHub
from chatd.stream.relay import Relay
from chatd.stream.watch import ChatListWatch
from chatd.worker.runner import ChatRunner

__all__ = ["PeerCommits"]

log = logging.getLogger("chatd.worker")


class PeerCommits:
    def __init__(
        self,
        *,
        store: Store,
        hub: StreamHub,
        relay: Relay,
        list_watch: ChatListWatch,
        runners: Mapping[str, ChatRunner],
        wake: asyncio.Event,
        spawn: Callable[[Awaitable[Any]], None],
        chat_deleted: Callable[[str], None],
    ) -> None:
        self.store = store
        self.hub = hub
        self.relay = relay
        self.list_watch = list_watch
        self.runners = runners
        self.wake = wake
        self.spawn = spawn
        self.chat_deleted = chat_deleted
        self._refreshing: set[str] = set()

    def on_notification(self, channel: str, data: dict[str, Any]) -> None:
        """A hint from another replica; versions and seqs decide what it means."""
        if channel == "chatd_wake":
            self.wake.set()
        elif channel == "chatd_events":
            for chat_id, seq in data.get("e", ()):
                self.relay.on_events(str(chat_id), int(seq))
        elif channel == "chatd_chat" and data.get("deleted"):
            # Deleted on another replica: end this replica's streams and tell list watchers.
            chat_id, owner_id = str(data.get("c")), str(data.get("u"))
            self.hub.close_chat(chat_id, "deleted")
            self.list_watch.publish_deleted(owner_id, chat_id)
            self.chat_deleted(chat_id)
        elif channel == "chatd_chat":
            chat_id = str(data.get("c"))
            if data.get("s") == ChatStatus.PENDING:
                self.wake.set()
            runner = self.runners.get(chat_id)
            newer = runner is not None and int(data.get("v", 0)) > runner.chat.snapshot_version
            if newer or self.list_watch.has_watchers(str(data.get("u"))):
                self._refresh(chat_id)

    def resync(self) -> None:
        """The listener reconnected: notifications sent meanwhile are lost; catch up."""
        self.wake.set()
        self.relay.resync()
        self.spawn(self.sync_owned())

    async def sync_owned(self) -> None:
        """Read every owned chat in one query and hand newer snapshots to their runners.

        This is what makes a lost notification harmless: an interrupt committed on
        another replica reaches the runner within one sync interval at worst.
        """
        runners = dict(self.runners)
        if not runners:
            return
        for chat in await self.store.get_chats(list(runners)):
            runner = runners[chat.id]
            if chat.snapshot_version > runner.chat.snapshot_version:
                self._deliver(chat)

    def _refresh(self, chat_id: str) -> None:
        """Read the chat and hand it to its runner and the list watchers (one read at a time)."""
        if chat_id in self._refreshing:
            return
        self._refreshing.add(chat_id)
        self.spawn(self._read_and_deliver(chat_id))

    async def _read_and_deliver(self, chat_id: str) -> None:
        try:
            chats = await self.store.get_chats([chat_id])
        except Exception:
            log.warning("chat %s: reading a changed chat failed; the sync repairs it", chat_id)
            return
        finally:
            self._refreshing.discard(chat_id)
        for chat in chats:
            self._deliver(chat)
            self.list_watch.publish(chat)

    def _deliver(self, chat: Chat) -> None:
        runner = self.runners.get(chat.id)
        if runner is not None and not runner.releasing:
            runner.on_snapshot(chat)
