"""What every part of `Store` shares: the database, the config, the clock, listeners."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from chatd.store._engine import Database
from chatd.store._models import Chat
from chatd.store._pubsub import Notifier
from chatd.store._secrets import SecretBox
from chatd.store._tx import StoreConfig, Tx

__all__ = ["ChatListener", "StoreBase", "utcnow"]

log = logging.getLogger("chatd.store")

ChatListener = Callable[[Chat], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """The state the transition mixins of `Store` work with."""

    # Encrypts provider keys and MCP server secrets; `Store.open` always sets it.
    secrets: SecretBox | None = None

    def __init__(
        self,
        db: Database,
        *,
        config: StoreConfig | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.config = config or StoreConfig()
        self.clock = clock or utcnow
        self._listeners: list[ChatListener] = []
        self._delete_listeners: list[ChatListener] = []
        # Other replicas hear of commits through this (PostgreSQL NOTIFY); by default
        # no one else is told: one SQLite process has only in-process listeners.
        self.notifier = Notifier()

    def _box(self) -> SecretBox:
        if self.secrets is None:
            raise RuntimeError("this Store was opened without a secret key")
        return self.secrets

    def add_listener(self, listener: ChatListener) -> None:
        """Call `listener(chat)` after every committed transition (in-process wake-ups)."""
        self._listeners.append(listener)

    def add_delete_listener(self, listener: ChatListener) -> None:
        """Call `listener(chat)` after a chat was deleted in this process."""
        self._delete_listeners.append(listener)

    def _deleted(self, chat: Chat) -> None:
        for listener in self._delete_listeners:
            listener(chat)
        self.notifier.chat_deleted(chat)

    def _committed(self, chat: Chat) -> None:
        for listener in self._listeners:
            listener(chat)
        self.notifier.chat_changed(chat)

    def _events_written(self, written: Sequence[tuple[str, int]]) -> None:
        """Stream events reached the durable log: (chat id, newest seq) pairs."""
        if written:
            self.notifier.events_written(written)

    @asynccontextmanager
    async def _transition(
        self, chat_id: str, name: str, *, step_id: str | None = None
    ) -> AsyncIterator[Tx]:
        """One transition = one transaction on the locked chat row."""
        async with self.db.write() as conn:
            tx = await Tx.lock(conn, chat_id, name, self.config, self.clock(), step_id=step_id)
            yield tx
        if tx.saved is not None:
            self._committed(tx.saved)
        if tx.last_event_seq:
            self._events_written([(chat_id, tx.last_event_seq)])
        if tx.saved is not None and tx.saved.parent_id is not None:
            try:
                await self._child_committed(tx.saved)
            except Exception:  # the child's transition stands; the sweeper retries the parent
                log.warning("chat %s: answering its parent's wait failed", chat_id, exc_info=True)

    async def _child_committed(self, chat: Chat) -> None:
        """A child chat's transition committed: `ChildChats` answers its parent's wait."""
