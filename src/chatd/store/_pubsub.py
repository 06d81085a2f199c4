"""Cross-replica hints over PostgreSQL LISTEN/NOTIFY (service spec §5.7).

One dedicated connection per replica both listens on chatd's channels and sends
the notifications the store queues after its commits. Payloads are pointers
(chat ids, versions, seqs), never bodies: a receiver reads what changed from the
tables. Notifications are hints — they may be lost (while the connection is
down), duplicated or reordered — so every receiver compares versions and seqs,
and periodic syncs repair what was missed. After a reconnect `on_reconnect`
runs, since anything sent meanwhile is gone.

Every payload carries `o`, the sending worker's id, so a replica ignores its own
notifications (it already acted on the commit in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
from sqlalchemy.engine import make_url

from chatd.store._models import Chat, ChatStatus

__all__ = ["CHANNELS", "Notifier", "PgPubSub", "asyncpg_connect_args"]

log = logging.getLogger("chatd.pubsub")

WAKE = "chatd_wake"
CHAT = "chatd_chat"
EVENTS = "chatd_events"
CHANNELS = (WAKE, CHAT, EVENTS)

# PostgreSQL's NOTIFY payload limit is 8000 bytes; chats per `chatd_events` payload
# stays well under it (a chat id and a seq are ~60 bytes of JSON).
EVENTS_PER_PAYLOAD = 100
# Notifications queued while the connection is down; the oldest are dropped
# (receivers repair from their syncs).
OUTBOX_LIMIT = 10_000
# Notifications sent per round trip.
SEND_BATCH = 500
RECONNECT_MIN = 1.0
RECONNECT_MAX = 30.0
# An idle connection is probed this often, so a dead server is noticed.
PROBE_INTERVAL = 5.0

_SEND = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"

Handler = Callable[[str, dict[str, Any]], None]


class Notifier:
    """What the store tells other replicas after a commit; the default tells no one.

    SQLite deployments are one process, where the store's in-process listeners
    already carry everything.
    """

    def chat_changed(self, chat: Chat) -> None:
        """A transition on `chat` committed."""

    def events_written(self, written: Sequence[tuple[str, int]]) -> None:
        """Stream events were committed to the durable log: (chat id, newest seq) pairs."""

    def chat_deleted(self, chat: Chat) -> None:
        """`chat` and everything in it was deleted."""


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """asyncpg.connect() keyword arguments for a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    args: dict[str, Any] = {
        "user": parsed.username,
        "password": parsed.password,
        "host": host if isinstance(host, str) else None,
        "port": parsed.port,
        "database": parsed.database,
    }
    return {key: value for key, value in args.items() if value is not None}


class PgPubSub(Notifier):
    """LISTEN on chatd's channels and NOTIFY them, on one connection that reconnects."""

    def __init__(self, url: str, origin: str) -> None:
        self.connect_args = asyncpg_connect_args(url)
        self.origin = origin
        self.handler: Handler | None = None
        self.on_reconnect: Callable[[], None] | None = None
        self.connected = asyncio.Event()
        self._outbox: deque[tuple[str, str]] = deque(maxlen=OUTBOX_LIMIT)
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._encoder = msgspec.json.Encoder()

    # --- sending (called by the store after commits) ---------------------------------

    def chat_changed(self, chat: Chat) -> None:
        self._send(
            CHAT,
            {
                "c": chat.id,
                "v": chat.snapshot_version,
                "s": str(chat.status),
                "r": chat.runner_id,
                "u": chat.owner_id,
            },
        )
        if chat.status == ChatStatus.PENDING and not chat.archived:
            self._send(WAKE, {"c": chat.id})

    def chat_deleted(self, chat: Chat) -> None:
        self._send(CHAT, {"c": chat.id, "u": chat.owner_id, "deleted": True})

    def events_written(self, written: Sequence[tuple[str, int]]) -> None:
        for start in range(0, len(written), EVENTS_PER_PAYLOAD):
            chunk = written[start : start + EVENTS_PER_PAYLOAD]
            self._send(EVENTS, {"e": [[chat_id, seq] for chat_id, seq in chunk]})

    def _send(self, channel: str, payload: dict[str, Any]) -> None:
        payload["o"] = self.origin
        self._outbox.append((channel, self._encoder.encode(payload).decode()))
        self._pending.set()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        """Connect and listen; waits up to `wait` seconds for the first connection
        (after that it keeps trying in the background)."""
        self._task = asyncio.create_task(self._run(), name="chatd-pubsub")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.connected.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RECONNECT_MIN
        first = True
        while True:
            try:
                conn = await asyncpg.connect(timeout=5, **self.connect_args)
            except Exception as err:
                log.warning("pubsub: cannot connect (%s); retrying in %.0f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: self._lose(lost))
            try:
                for channel in CHANNELS:
                    await conn.add_listener(channel, self._on_message)
                delay = RECONNECT_MIN
                self.connected.set()
                if not first:
                    log.info("pubsub: reconnected; resynchronising")
                    if self.on_reconnect is not None:
                        self.on_reconnect()
                first = False
                await self._pump(conn, lost)
                log.warning("pubsub: connection lost; reconnecting")
            except Exception as err:  # whatever broke, the listener must live on
                log.warning("pubsub: connection failed (%s); reconnecting", err)
                await asyncio.sleep(RECONNECT_MIN)
            finally:
                self.connected.clear()
                conn.terminate()

    def _lose(self, lost: asyncio.Event) -> None:
        lost.set()
        self._pending.set()  # wake the pump, so it notices now and not at the next probe

    async def _pump(self, conn: Any, lost: asyncio.Event) -> None:
        """Send queued notifications until the connection is lost."""
        while not lost.is_set() and not conn.is_closed():
            if not self._outbox:
                self._pending.clear()
                try:
                    async with asyncio.timeout(PROBE_INTERVAL):
                        await self._pending.wait()
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=PROBE_INTERVAL)
                continue  # look at the connection again before sending
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), SEND_BATCH))]
            await conn.execute(_SEND, [c for c, _ in batch], [p for _, p in batch], timeout=10)

    def _on_message(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            data = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            log.warning("pubsub: ignoring a malformed %s payload", channel)
            return
        if not isinstance(data, dict) or data.get("o") == self.origin:
            return
        if self.handler is None:
            return
        try:
            self.handler(channel, data)
        except Exception:
            log.exception("pubsub: handling a %s notification failed", channel)
