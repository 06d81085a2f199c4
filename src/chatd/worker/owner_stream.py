"""The event stream of a chat this replica owns: seq allocation, hub fan-out, durable flush.

The owner numbers events from the block its lease reserved (spec §5.1), puts each
in the local hub at once, and writes them to the durable log in batches — with
`commit_step` when a step commits, else every flush interval, or sooner once
`FLUSH_EVENTS` are pending. One lock serialises the chat's writes so events reach
the log in seq order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from chatd.store import Chat, Fence, Store
from chatd.store import StreamEvent as StoredEvent
from chatd.stream.events import derive_events, pending_tool_calls
from chatd.stream.hub import StreamHub, event_from_payload

__all__ = ["OwnerStream"]

_encoder = msgspec.json.Encoder()


#: Pending events at which the owner asks for a flush before the interval is up
#: (spec §5.5: every 50 ms or 256 events, whichever comes first).
FLUSH_EVENTS = 256


class OwnerStream:
    def __init__(
        self,
        store: Store,
        hub: StreamHub,
        fence: Fence,
        first_seq: int,
        chat: Chat,
        flush_soon: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.flush_soon = flush_soon
        self.hub = hub
        self.fence = fence
        self.chat_id = fence.chat_id
        self.next_seq = first_seq
        self.pending: list[StoredEvent] = []
        self.emitted_state: dict[str, Any] | None = chat.emitted_state
        self.write_lock = asyncio.Lock()
        # Set while the replica's batch flush is writing this chat's events: later
        # writes wait for it, so events reach the log in seq order.
        self.inflight: asyncio.Future[None] | None = None
        self._derive_lock = asyncio.Lock()
        self.dirty_state = False

    def emit(self, type_: str, payload: dict[str, Any]) -> None:
        seq = self.next_seq
        self.next_seq += 1
        # Encoded once: the hub's frame and the durable row share the JSON.
        encoded = _encoder.encode(payload)
        self.hub.publish(self.chat_id, event_from_payload(self.chat_id, seq, type_, encoded))
        self.pending.append(StoredEvent(seq=seq, type=type_, data=payload, encoded=encoded))
        if len(self.pending) >= FLUSH_EVENTS and self.flush_soon is not None:
            self.flush_soon()

    def take_pending(self) -> list[StoredEvent]:
        events, self.pending = self.pending, []
        return events

    def restore_pending(self, events: list[StoredEvent]) -> None:
        self.pending = events + self.pending

    async def derive(self, chat: Chat) -> None:
        """Emit what changed in `chat` since the stream last told watchers."""
        async with self._derive_lock:
            since = int((self.emitted_state or {}).get("history_version", 0))
            changed = (
                await self.store.messages_changed_since(self.chat_id, since)
                if chat.history_version != since
                else []
            )
            queue = None
            if (self.emitted_state or {}).get("queue_version") != chat.queue_version:
                queue = await self.store.list_queued_messages(self.chat_id)
            calls: list[dict[str, Any]] = []
            if str(chat.status) == "requires_action":
                calls = pending_tool_calls(await self.store.recent_messages(self.chat_id))
            drafts, state = derive_events(
                chat, self.emitted_state, changed, queue, requires_action_calls=calls
            )
            for type_, payload in drafts:
                self.emit(type_, payload)
            if state != self.emitted_state:
                self.emitted_state = state
                self.dirty_state = True

    async def wait_inflight(self) -> None:
        if self.inflight is not None:
            await asyncio.shield(self.inflight)

    def take_for_batch(self) -> tuple[list[StoredEvent], dict[str, Any] | None] | None:
        """Hand pending events to the replica's batch flush, unless a write is running."""
        if self.inflight is not None or self.write_lock.locked():
            return None
        if not self.pending and not self.dirty_state:
            return None
        state = self.emitted_state if self.dirty_state else None
        self.dirty_state = False
        self.inflight = asyncio.get_running_loop().create_future()
        return self.take_pending(), state

    def batch_done(self, events: list[StoredEvent], state: dict[str, Any] | None, ok: bool) -> None:
        if not ok:
            self.restore_pending(events)
            self.dirty_state = self.dirty_state or state is not None
        if self.inflight is not None and not self.inflight.done():
            self.inflight.set_result(None)
        self.inflight = None

    async def flush(self) -> None:
        """Write pending events (and the emitted state) to the durable log."""
        await self.wait_inflight()
        async with self.write_lock:
            if not self.pending and not self.dirty_state:
                return
            events = self.take_pending()
            try:
                await self.store.append_events(self.fence, events, emitted_state=self.emitted_state)
            except BaseException:
                self.restore_pending(events)
                raise
            self.dirty_state = False
