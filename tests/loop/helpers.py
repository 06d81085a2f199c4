"""Small builders for stream parts and run options used across the loop tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from chatd.loop import Call, FakeModel, PersistedStep, RunOutcome, stream_from_parts
from chatd.types import FinishReason, StreamPart, StreamPartType, Usage

T = StreamPartType


def text(block_id: str, *chunks: str) -> list[StreamPart]:
    return [
        StreamPart(T.TEXT_START, id=block_id),
        *(StreamPart(T.TEXT_DELTA, id=block_id, delta=c) for c in chunks),
        StreamPart(T.TEXT_END, id=block_id),
    ]


def reasoning(block_id: str, *chunks: str) -> list[StreamPart]:
    return [
        StreamPart(T.REASONING_START, id=block_id),
        *(StreamPart(T.REASONING_DELTA, id=block_id, delta=c) for c in chunks),
        StreamPart(T.REASONING_END, id=block_id),
    ]


def tool_call(
    call_id: str, name: str, args: str = "{}", *, provider_executed: bool = False
) -> list[StreamPart]:
    return [
        StreamPart(
            T.TOOL_INPUT_START,
            id=call_id,
            tool_call_name=name,
            provider_executed=provider_executed,
        ),
        StreamPart(T.TOOL_INPUT_DELTA, id=call_id, delta=args),
        StreamPart(T.TOOL_INPUT_END, id=call_id),
        StreamPart(
            T.TOOL_CALL,
            id=call_id,
            tool_call_name=name,
            tool_call_input=args,
            provider_executed=provider_executed,
        ),
    ]


def finish(reason: FinishReason = FinishReason.STOP, usage: Usage | None = None) -> StreamPart:
    return StreamPart(T.FINISH, finish_reason=reason, usage=usage)


M = TypeVar("M", bound=FakeModel)


def scripted_model(
    *steps: Sequence[StreamPart],
    provider: str = "fake",
    model: str = "fake-model",
    model_type: type[M] = FakeModel,  # type: ignore[assignment]
) -> M:
    """A FakeModel (or subclass) that streams `steps[n]` on its n-th call (the last repeats)."""
    calls = 0

    def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        parts = steps[min(calls, len(steps) - 1)]
        calls += 1
        return stream_from_parts(parts)

    return model_type(stream_fn=stream_fn, provider_name=provider, model_name=model)


class Recorder:
    """A persist_step that remembers every step it was given."""

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.steps: list[PersistedStep] = []
        self.fail_with = fail_with
        self.outcome: RunOutcome | None = None  # for a caller to keep run()'s result

    async def __call__(self, step: PersistedStep) -> None:
        self.steps.append(step)
        if self.fail_with is not None:
            raise self.fail_with


def published_recorder() -> tuple[list[tuple[str, Any]], Callable[[Any, Any], None]]:
    events: list[tuple[str, Any]] = []

    def publish(role: Any, part: Any) -> None:
        events.append((str(role), part))

    return events, publish
