"""The worker side of chatd: running chats and streaming their events to watchers."""

from chatd.worker.hub import EventLog, StreamEvent, StreamHub, Subscription, encode_event

__all__ = ["EventLog", "StreamEvent", "StreamHub", "Subscription", "encode_event"]
