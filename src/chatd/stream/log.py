"""The durable side of a chat's stream: the store's event rows, as the hub reads them."""

from __future__ import annotations

from chatd.store import Store
from chatd.store import StreamEvent as StoredEvent
from chatd.stream.hub import StreamEvent, encode_event

__all__ = ["StoreLog", "hub_event"]


def hub_event(chat_id: str, event: StoredEvent) -> StreamEvent:
    """A stored event row as the hub's encoded event."""
    return encode_event(chat_id, event.seq, event.type, event.data)


class StoreLog:
    """The store's `chat_stream_events`, as the hub's `EventLog`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def stream_bounds(self, chat_id: str) -> tuple[int, int]:
        bounds: tuple[int, int] = await self.store.stream_bounds(chat_id)
        return bounds

    async def read_events_after(
        self, chat_id: str, after_seq: int, limit: int
    ) -> list[StreamEvent]:
        events = await self.store.read_events(chat_id, after_seq=after_seq, limit=limit)
        return [hub_event(chat_id, e) for e in events]
