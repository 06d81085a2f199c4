"""What a transition raises when it refuses. Every refusal changes nothing.

| exception            | API status | when                                                      |
|----------------------|------------|-----------------------------------------------------------|
| `NotFound`           | 404        | unknown chat, message or queued message                   |
| `TransitionRejected` | 409        | the state forbids it (`kind`: invalid_state, queue_full,  |
|                      |            | nothing_to_compact, nothing_to_clear); carries the chat   |
| `InvalidRequest`     | 422        | bad input for a valid state (`kind`: invalid_request,     |
|                      |            | invalid_tool_results)                                     |
| `StaleFence`         | —          | a worker write from a runner that no longer holds the     |
|                      |            | lease, or against a history that moved; the runner stops  |
| `ChatIsInterrupting` | —          | a worker write while an interrupt is pending; the runner  |
|                      |            | turns it into the loop's `ChatInterrupted`, so the loop   |
|                      |            | persists the partial step (spec §4.4)                     |
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from chatd.store._models import Chat

__all__ = [
    "ChatIsInterrupting",
    "InvalidRequest",
    "NotFound",
    "RejectionKind",
    "StaleFence",
    "StoreError",
    "TransitionRejected",
    "database_unreachable",
]


class RejectionKind(enum.StrEnum):
    INVALID_STATE = "invalid_state"
    QUEUE_FULL = "queue_full"
    NOTHING_TO_COMPACT = "nothing_to_compact"
    NOTHING_TO_CLEAR = "nothing_to_clear"


_MESSAGES = {
    RejectionKind.INVALID_STATE: "The chat is {status}; this is not possible right now.",
    RejectionKind.QUEUE_FULL: "The chat's queue is full; wait for the turn to end or delete "
    "a queued message.",
    RejectionKind.NOTHING_TO_COMPACT: "There is nothing new to compact since the last "
    "compaction or clear.",
    RejectionKind.NOTHING_TO_CLEAR: "There is nothing to clear since the last clear.",
}


class StoreError(Exception):
    """Base of every refusal the store raises."""


class NotFound(StoreError):
    def __init__(self, what: str, id: str) -> None:
        super().__init__(f"{what} {id} not found")
        self.what = what
        self.id = id


class TransitionRejected(StoreError):
    """The chat's state forbids the transition (HTTP 409)."""

    def __init__(
        self, kind: RejectionKind, chat: Chat, transition: str, message: str | None = None
    ) -> None:
        self.kind = kind
        self.chat = chat
        self.transition = transition
        self.message = message or _MESSAGES[kind].format(status=str(chat.status).replace("_", " "))
        self.detail = f"transition {transition} is not allowed from state {chat.state}"
        super().__init__(f"{self.detail} ({kind})")

    @property
    def status(self) -> str:
        return str(self.chat.status)

    def to_dict(self) -> dict[str, Any]:
        """The `error` object of the 409 body (spec §2.6)."""
        return {
            "kind": str(self.kind),
            "message": self.message,
            "detail": self.detail,
            "status": str(self.chat.status),
            "archived": self.chat.archived,
            "snapshot_version": self.chat.snapshot_version,
        }


class InvalidRequest(StoreError):
    """Input that no state accepts (HTTP 422)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class StaleFence(StoreError):
    """The runner's lease (runner id, epoch) or expected history version no longer holds."""

    def __init__(self, chat: Chat, reason: str) -> None:
        super().__init__(f"stale fence on chat {chat.id}: {reason}")
        self.chat = chat
        self.reason = reason


class ChatIsInterrupting(StoreError):
    """The runner still holds the lease but the user asked for an interrupt."""

    def __init__(self, chat: Chat) -> None:
        super().__init__("chat is interrupting")
        self.chat = chat


def database_unreachable(exc: BaseException) -> bool:
    """The database is down or the connection broke, as opposed to a bad statement.

    The API answers these with 503 `unavailable` (spec §8.6). asyncpg raises plain
    `OSError`s when it cannot connect at all (refused, or a missing unix socket).
    """
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, OSError)
