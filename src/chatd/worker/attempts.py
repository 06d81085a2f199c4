"""The chat's model as the runner hands it to the loop: each stream attempt recorded first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from chatd.loop import MODEL_HOOKS, Call, GenerateResponse, Model
from chatd.types import StreamPart

__all__ = ["AttemptRecorder"]


class AttemptRecorder:
    """Wraps the chat's model: every stream attempt is recorded first (spec §4.6).

    The inner model's optional hooks (`chatd.loop.ModelHooks`) are forwarded, and
    only the ones it has: the loop calls a hook only where one exists.
    """

    def __init__(self, inner: Model, record: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.record = record
        for hook in MODEL_HOOKS:
            method = getattr(inner, hook, None)
            if method is not None:
                setattr(self, hook, method)

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def context_limit(self) -> int | None:
        limit = getattr(self.inner, "context_limit", None)
        return limit if isinstance(limit, int) else None

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        await self.record()
        return await self.inner.stream(call)

    async def generate(self, call: Call) -> GenerateResponse:
        return await self.inner.generate(call)
