"""The live event log: hub, relay, derived events, JSON views, chat-list watch.

It sits below both the api and the worker, which meet only through it and the
store: the worker publishes a chat's events here, the api serves them from here.
"""

from chatd.stream.hub import EventLog, StreamEvent, StreamHub, Subscription, encode_event
from chatd.stream.log import StoreLog, hub_event

__all__ = [
    "EventLog",
    "StoreLog",
    "StreamEvent",
    "StreamHub",
    "Subscription",
    "encode_event",
    "hub_event",
]
