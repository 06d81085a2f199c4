"""`FakeModel`, the test double of the `Model` protocol shipped with the loop.

The protocol itself lives in `chatd.protocols`; providers (`chatd.providers`)
implement it over official SDKs. Nothing here knows any provider.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from chatd.protocols import Call, GenerateResponse
from chatd.types import StreamPart

__all__ = ["FakeModel", "stream_from_parts"]


StreamFn = Callable[[Call], Awaitable[AsyncIterator[StreamPart]] | AsyncIterator[StreamPart]]
GenerateFn = Callable[[Call], Awaitable[GenerateResponse]]


@dataclass(slots=True)
class FakeModel:
    """A model whose behaviour is a function: the public test double of the loop.

    `stream_fn(call)` returns the stream (an async iterator, or an awaitable of one,
    so it can raise while "opening"); `generate_fn(call)` answers `generate`.
    """

    stream_fn: StreamFn | None = None
    generate_fn: GenerateFn | None = None
    provider_name: str = "fake"
    model_name: str = "fake-model"
    calls: list[Call] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return self.provider_name

    @property
    def model(self) -> str:
        return self.model_name

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        self.calls.append(call)
        if self.stream_fn is None:
            raise RuntimeError("FakeModel.stream_fn is not set")
        result = self.stream_fn(call)
        if inspect.isawaitable(result):
            return await result
        return result

    async def generate(self, call: Call) -> GenerateResponse:
        if self.generate_fn is None:
            raise RuntimeError("FakeModel.generate_fn is not set")
        return await self.generate_fn(call)


async def stream_from_parts(parts: Iterable[StreamPart]) -> AsyncIterator[StreamPart]:
    """An async iterator over a fixed list of parts."""
    for part in parts:
        yield part
