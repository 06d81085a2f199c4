"""How a run ends when it does not simply return, and the handle that interrupts it."""

from __future__ import annotations

import asyncio
from typing import Any

from chatd.errors import ClassifiedError

__all__ = [
    "ChatInterrupted",
    "DynamicToolCall",
    "Interrupt",
    "PersistStepError",
    "StartupTimeout",
    "StopAfterTool",
    "StreamError",
]


class ChatInterrupted(Exception):
    """The chat was interrupted; the partial step has been persisted."""

    def __init__(self, message: str = "chat interrupted") -> None:
        super().__init__(message)


class DynamicToolCall(Exception):
    """The step was persisted with tool calls the client must run (requires_action)."""

    def __init__(self, message: str = "dynamic tool call") -> None:
        super().__init__(message)


class StopAfterTool(Exception):
    """A stop-after tool succeeded: a clean end of the turn."""

    def __init__(self, message: str = "stop after tool") -> None:
        super().__init__(message)


class StartupTimeout(Exception):
    """The model sent nothing within the startup timeout."""

    def __init__(
        self, message: str = "chat response did not start before the startup timeout"
    ) -> None:
        super().__init__(message)


class StreamError(Exception):
    """The model stream failed for good (not retryable, or out of attempts)."""

    def __init__(self, message: str, classified: ClassifiedError) -> None:
        super().__init__(message)
        self.classified = classified


class PersistStepError(Exception):
    """The `persist_step` callback failed; `__cause__` is its error."""


class _Interrupted(BaseException):
    """Internal: unwinds a run from wherever the interrupt landed up to the step,
    past `retry()` (which only looks at Exception) and tool error handling."""


class Interrupt:
    """A handle that interrupts a run from another task (an API call, a worker).

    `interrupt()` cancels whatever the run is waiting on (the model stream, a
    retry backoff, running tools); the run then persists its partial step and
    raises `ChatInterrupted`. Persisting is never interrupted.
    """

    __slots__ = ("_reason", "_target")

    def __init__(self) -> None:
        self._reason: str | None = None
        self._target: asyncio.Future[Any] | None = None

    @property
    def is_set(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def interrupt(self, reason: str = "chat interrupted") -> None:
        if self._reason is not None:
            return
        self._reason = reason
        if self._target is not None and not self._target.done():
            self._target.cancel()
