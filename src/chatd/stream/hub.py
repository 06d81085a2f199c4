"""The stream hub: per-chat rings of numbered events, fanned out to live watchers.

Every event carries its chat's `seq`; it is encoded once, as a complete SSE frame,
when published, and that one `bytes` object is shared by the ring and by every
watcher's queue. A watcher registers before it reads any backlog, so nothing
published during its catch-up is missed, and skips any seq it already sent, so
the overlap is invisible: each seq reaches a watcher exactly once, in order.

Caps (service spec §5.5): a ring keeps at most `buffer_events` events and
`buffer_bytes` of frames, evicting the oldest (counted in
`stream_buffer_dropped_total`); a watcher's queue holds at most `watcher_queue`
undelivered events, beyond which the watcher is closed and must reconnect with
`Last-Event-ID` — a slow client never slows the chat and never grows memory.

A live watcher whose connection can take writes synchronously (`Subscription.push`)
is written by the publisher itself once its backlog is out: no task wakes up per
event. Its connection's send buffer is then its queue, and the writer reports it
too far behind (the watcher is closed as slow) past the writer's own byte limit.

The hub does no I/O. Events older than the ring come from an optional durable
`EventLog` (the store); without one, a resume below the ring gets `history_reset`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import msgspec

__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_EVENTS",
    "DEFAULT_WATCHER_QUEUE",
    "DropCounter",
    "EventLog",
    "Push",
    "StreamEvent",
    "StreamHub",
    "Subscription",
    "encode_event",
    "event_from_payload",
    "reset_frame",
]

# 10,000 events per chat: upstream's maxStreamBufferSize.
DEFAULT_BUFFER_EVENTS = 10_000
# 1 MiB of frames per chat: upstream's per-episode part-buffer cap.
DEFAULT_BUFFER_BYTES = 1 << 20
# Undelivered events per watcher before it is dropped as too slow.
DEFAULT_WATCHER_QUEUE = 5_000
LOG_PAGE = 500

_encoder = msgspec.json.Encoder()
_monotonic = time.monotonic

#: Writes one chunk of frames to a watcher's connection at once; False when the
#: connection is gone or too far behind (the watcher is then closed as slow).
Push = Callable[[bytes], bool]


class StreamEvent(msgspec.Struct, frozen=True, gc=False):
    """One event of a chat's stream: its seq, its type and its encoded SSE frame.

    A struct the collector never tracks (its fields are immutable scalars): a
    streaming replica makes 20 a second per chat and rings keep thousands.
    """

    seq: int
    type: str
    frame: bytes  # b"id: <seq>\nevent: <type>\ndata: <data>\n\n"

    @property
    def data(self) -> bytes:
        """The event's JSON object, one line (the frame's `data:` field)."""
        frame = self.frame
        return frame[frame.index(b"\ndata: ") + 7 : -2]


def encode_event(chat_id: str, seq: int, type: str, payload: Mapping[str, Any]) -> StreamEvent:
    """Encode an event once; `payload` must not contain seq, chat_id or type."""
    return event_from_payload(chat_id, seq, type, _encoder.encode(payload))


def event_from_payload(chat_id: str, seq: int, type: str, payload: bytes) -> StreamEvent:
    """The event whose payload is already the JSON object `payload` (as the durable log
    stores it): seq, chat_id and type are spliced in front, nothing is encoded again.
    Chat ids and event types never need JSON escaping."""
    head = f'id: {seq}\nevent: {type}\ndata: {{"seq":{seq},"chat_id":"{chat_id}","type":"{type}"'
    tail = b"}\n\n" if payload == b"{}" else b"," + payload[1:] + b"\n\n"
    return StreamEvent(seq, type, head.encode() + tail)


def reset_frame(chat_id: str, reason: str, keep_through_position: int | None = None) -> bytes:
    """A connection-level `history_reset` frame: no `id:`, so it does not move the cursor."""
    data = _encoder.encode(
        {
            "chat_id": chat_id,
            "type": "history_reset",
            "reason": reason,
            "keep_through_position": keep_through_position,
        }
    )
    return b"event: history_reset\ndata: %s\n\n" % data


class DropCounter(Protocol):
    """Where the hub counts events its rings evicted (`Metrics` is one)."""

    def record_stream_buffer_dropped(self) -> None: ...


class EventLog(Protocol):
    """The durable side of a chat's stream (the store's `chat_stream_events`)."""

    async def stream_bounds(self, chat_id: str) -> tuple[int, int]:
        """(pruned_through_seq, highest seq ever reserved) for the chat."""
        ...

    async def read_events_after(
        self, chat_id: str, after_seq: int, limit: int
    ) -> list[StreamEvent]: ...


class _Ring:
    __slots__ = ("bytes", "events", "evicted_through", "last_active", "newest", "watchers")

    def __init__(self) -> None:
        self.events: deque[StreamEvent] = deque()
        self.bytes = 0
        self.newest = 0
        self.evicted_through = 0  # highest seq no longer in memory
        self.watchers: set[_Watcher] = set()
        self.last_active = time.monotonic()


class _Watcher:
    __slots__ = ("closed", "idle", "last_sent", "limit", "push", "queue", "wake")

    def __init__(self, limit: int, cursor: int) -> None:
        self.queue: deque[StreamEvent] = deque()
        self.wake = asyncio.Event()
        self.limit = limit
        self.closed: str | None = None
        self.last_sent = cursor  # the highest seq this watcher's client has been sent
        # Set once the backlog is out, when the connection takes synchronous writes.
        self.push: Push | None = None
        self.idle: _IdleTimer | None = None

    def offer(self, event: StreamEvent) -> None:
        if self.closed is not None:
            return
        push = self.push
        if push is not None:
            if event.seq > self.last_sent:
                self.last_sent = event.seq
                if self.idle is not None:
                    self.idle.touch()
                try:
                    written = push(event.frame)
                except Exception:  # a broken connection must never fail the publisher
                    written = False
                if not written:
                    self.close("slow")
            return
        if len(self.queue) >= self.limit:
            self.closed = "slow"
            self.queue.clear()
        else:
            self.queue.append(event)
        self.wake.set()

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
        self.push = None
        self.wake.set()


class _IdleTimer:
    """Flags a watcher `due` for a keep-alive after `interval` seconds without a write.

    One timer per interval rather than one per event: arming and cancelling an
    `asyncio.timeout` around every wait cost ~5 % of a streaming replica's CPU.
    A write only records the time; the timer, when it fires, re-arms itself for
    whatever is left of the interval since the last write.
    """

    __slots__ = ("_handle", "_loop", "_wake", "due", "interval", "last_write")

    def __init__(self, interval: float, wake: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = wake
        self.interval = interval
        self.last_write = self._loop.time()
        self.due = False
        self._handle = self._loop.call_later(interval, self._check)

    def touch(self) -> None:
        """Something was written: the idle interval starts again."""
        self.last_write = self._loop.time()
        self.due = False

    def cancel(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        remaining = self.last_write + self.interval - self._loop.time()
        if remaining <= 0:
            self.due = True
            self._wake.set()
            remaining = self.interval
        self._handle = self._loop.call_later(remaining, self._check)


class StreamHub:
    """In-process fan-out of every chat's events to its watchers."""

    def __init__(
        self,
        *,
        buffer_events: int = DEFAULT_BUFFER_EVENTS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        watcher_queue: int = DEFAULT_WATCHER_QUEUE,
        metrics: DropCounter | None = None,
    ) -> None:
        self.buffer_events = buffer_events
        self.buffer_bytes = buffer_bytes
        self.watcher_queue = watcher_queue
        self.metrics = metrics
        self._rings: dict[str, _Ring] = {}

    def _ring(self, chat_id: str) -> _Ring:
        ring = self._rings.get(chat_id)
        if ring is None:
            ring = self._rings[chat_id] = _Ring()
        return ring

    def newest_seq(self, chat_id: str) -> int:
        ring = self._rings.get(chat_id)
        return ring.newest if ring is not None else 0

    def watcher_count(self, chat_id: str) -> int:
        """How many watchers follow the chat here."""
        ring = self._rings.get(chat_id)
        return len(ring.watchers) if ring is not None else 0

    def watched_chats(self) -> set[str]:
        """The chats that have at least one watcher here."""
        return {chat_id for chat_id, ring in self._rings.items() if ring.watchers}

    def publish(self, chat_id: str, event: StreamEvent) -> bool:
        """Add an event to the chat's ring and every watcher's queue.

        An event whose seq is not above the ring's newest is a stale owner's late
        event: it is discarded (returns False).
        """
        ring = self._rings.get(chat_id)
        if ring is None:
            ring = self._rings[chat_id] = _Ring()
        if event.seq <= ring.newest:
            return False
        ring.newest = event.seq
        ring.events.append(event)
        ring.bytes += len(event.frame)
        ring.last_active = _monotonic()
        while len(ring.events) > self.buffer_events or (
            ring.bytes > self.buffer_bytes and len(ring.events) > 1
        ):
            dropped = ring.events.popleft()
            ring.bytes -= len(dropped.frame)
            ring.evicted_through = dropped.seq
            if self.metrics is not None:
                self.metrics.record_stream_buffer_dropped()
        for watcher in ring.watchers:
            watcher.offer(event)
        return True

    def subscribe(self, chat_id: str, cursor: int, log: EventLog | None = None) -> Subscription:
        """Start following a chat from `cursor` (the last seq the client has)."""
        ring = self._ring(chat_id)
        watcher = _Watcher(self.watcher_queue, cursor)
        ring.watchers.add(watcher)  # before any backlog is read
        return Subscription(self, chat_id, ring, watcher, cursor, log)

    def close_chat(self, chat_id: str, reason: str = "closed") -> None:
        """Close every watcher of a chat (deletion, shutdown) and free its ring."""
        ring = self._rings.pop(chat_id, None)
        if ring is not None:
            for watcher in ring.watchers:
                watcher.close(reason)

    def close_all(self, reason: str = "shutdown") -> None:
        for chat_id in list(self._rings):
            self.close_chat(chat_id, reason)

    def release_idle(self, idle_seconds: float = 60.0) -> int:
        """Free rings with no watchers and no events for `idle_seconds`; returns how many."""
        cutoff = time.monotonic() - idle_seconds
        idle = [
            chat_id
            for chat_id, ring in self._rings.items()
            if not ring.watchers and ring.last_active < cutoff
        ]
        for chat_id in idle:
            del self._rings[chat_id]
        return len(idle)

    def _unsubscribe(self, ring: _Ring, watcher: _Watcher) -> None:
        ring.watchers.discard(watcher)


class Subscription:
    """One watcher's view of a chat: the backlog after its cursor, then live events.

    Iterate `frames()` for SSE bytes. It ends when the watcher is closed (too slow,
    chat closed, hub shut down); `closed_reason` says why.
    """

    def __init__(
        self,
        hub: StreamHub,
        chat_id: str,
        ring: _Ring,
        watcher: _Watcher,
        cursor: int,
        log: EventLog | None,
    ) -> None:
        self._hub = hub
        self.chat_id = chat_id
        self._ring = ring
        self._watcher = watcher
        self.cursor = cursor
        self._log = log
        #: Set before `live` runs to have the publisher write live frames itself.
        self.push: Push | None = None

    @property
    def last_sent(self) -> int:
        return self._watcher.last_sent

    @last_sent.setter
    def last_sent(self, seq: int) -> None:
        self._watcher.last_sent = seq

    @property
    def closed_reason(self) -> str | None:
        return self._watcher.closed

    def close(self) -> None:
        self._watcher.close("unsubscribed")
        self._hub._unsubscribe(self._ring, self._watcher)

    async def backlog(self) -> AsyncIterator[bytes]:
        """Frames for every available event after the cursor (and a reset if there is a gap)."""
        ring, cursor = self._ring, self.cursor
        if self._log is not None:
            pruned, reserved = await self._log.stream_bounds(self.chat_id)
            reserved = max(reserved, ring.newest)
        else:
            pruned, reserved = ring.evicted_through, ring.newest
        if cursor < pruned or cursor > reserved:
            yield reset_frame(self.chat_id, "resume_gap")
            cursor = pruned
        self.last_sent = cursor
        if self._log is not None:
            # The ring may not reach back to the cursor (evicted, or this replica
            # only started following the chat recently): read the log up to it.
            ring_first = ring.events[0].seq if ring.events else None
            while ring_first is None or self.last_sent + 1 < ring_first:
                page = await self._log.read_events_after(self.chat_id, self.last_sent, LOG_PAGE)
                for event in page:
                    if event.seq > self.last_sent:
                        self.last_sent = event.seq
                        yield event.frame
                if len(page) < LOG_PAGE:
                    break
        for event in list(ring.events):
            if event.seq > self.last_sent:
                self.last_sent = event.seq
                yield event.frame

    async def live(self, keepalive: float | None = None) -> AsyncIterator[bytes]:
        """Frames of live events as they arrive, joined per wake-up into one write.

        With `keepalive`, yields `b""` after that many idle seconds so the caller can
        send a keep-alive comment. Ends when the watcher is closed. With `push` set,
        once everything queued is yielded the publisher writes later frames through
        it and this yields only keep-alives.
        """
        watcher = self._watcher
        idle = _IdleTimer(keepalive, watcher.wake) if keepalive is not None else None
        try:
            while True:
                if not watcher.queue:
                    if watcher.closed is not None:
                        return
                    if idle is not None and idle.due:
                        idle.touch()
                        yield b""
                        continue
                    if self.push is not None and watcher.push is None:
                        # Nothing is queued: from here the publisher writes directly.
                        watcher.idle = idle
                        watcher.push = self.push
                    watcher.wake.clear()
                    await watcher.wake.wait()
                    continue
                if watcher.closed == "slow":
                    return
                chunks = []
                while watcher.queue:
                    event = watcher.queue.popleft()
                    if event.seq > self.last_sent:
                        self.last_sent = event.seq
                        chunks.append(event.frame)
                if chunks:
                    if idle is not None:
                        idle.touch()
                    yield b"".join(chunks)
        finally:
            if idle is not None:
                idle.cancel()

    async def frames(self, keepalive: float | None = None) -> AsyncIterator[bytes]:
        """The backlog, then live events; see `backlog` and `live`."""
        try:
            async for frame in self.backlog():
                yield frame
            async for chunk in self.live(keepalive):
                yield chunk
        finally:
            self.close()
