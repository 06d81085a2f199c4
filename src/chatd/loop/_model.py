"""The model interface the loop drives, and `FakeModel`, the test double shipped with it.

A model turns a `Call` (prompt, tool definitions, sampling settings) into a stream
of `StreamPart`s. Providers (`chatd.providers`) implement it over official SDKs;
nothing here knows any provider.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from chatd.types import Message, MessagePart, StreamPart, Usage

__all__ = [
    "Call",
    "FakeModel",
    "GenerateResponse",
    "Model",
    "ModelSettings",
    "ToolDefinition",
    "stream_from_parts",
]


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool as the model sees it: name, description and a JSON-schema object for its input."""

    name: str
    description: str
    input_schema: dict[str, Any]
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Sampling settings copied into every call; `None` leaves the provider's default."""

    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    prompt: list[Message]
    tools: list[ToolDefinition] = field(default_factory=list)
    # "auto", "none", "required", or the name of one tool.
    tool_choice: str = "auto"
    settings: ModelSettings = field(default_factory=ModelSettings)
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GenerateResponse:
    """A non-streamed answer (used for summaries and titles)."""

    content: list[MessagePart]
    usage: Usage = field(default_factory=Usage)


@runtime_checkable
class Model(Protocol):
    """What the loop needs from a model. `stream` may raise while opening the stream."""

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]: ...

    async def generate(self, call: Call) -> GenerateResponse: ...


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
