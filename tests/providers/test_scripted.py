"""The offline scripted model, driven through the real loop."""

from __future__ import annotations

import pytest

from chatd.errors import ErrorKind
from chatd.loop import (
    ManualClock,
    PersistedStep,
    RunOptions,
    StreamError,
    Tool,
    ToolCall,
    ToolResponse,
    run,
)
from chatd.providers.scripted import InjectedError, ScriptedModel, ScriptedReply
from chatd.types import Message, Role, TextPart, ToolCallPart, ToolResultPart

USER = [Message(Role.USER, [TextPart("what time is it?")])]


class Steps(list[PersistedStep]):
    async def __call__(self, step: PersistedStep) -> None:
        self.append(step)


async def _clock_tool(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text("12:00")


async def test_default_script_calls_the_first_tool_once_then_answers() -> None:
    steps = Steps()
    model = ScriptedModel()
    await run(
        RunOptions(
            model=model,
            messages=USER,
            tools=[Tool("clock", "tells the time", _clock_tool)],
            max_steps=5,
            persist_step=steps,
        )
    )
    assert len(steps) == 2
    calls = [p for p in steps[0].content if isinstance(p, ToolCallPart)]
    assert [c.tool_name for c in calls] == ["clock"]
    [result] = [p for p in steps[0].content if isinstance(p, ToolResultPart)]
    assert result.output is not None and not result.is_error
    final = [p for p in steps[1].content if isinstance(p, TextPart)]
    assert "12:00" in final[0].text


async def test_default_script_without_tools_replies_with_the_user_text() -> None:
    steps = Steps()
    await run(RunOptions(model=ScriptedModel(), messages=USER, persist_step=steps))
    [step] = steps
    texts = [p.text for p in step.content if isinstance(p, TextPart)]
    assert "what time is it?" in texts[0]
    assert step.usage.input_tokens == 4


async def test_injected_429_is_retried_then_answers() -> None:
    clock = ManualClock()
    steps = Steps()
    retries: list[str] = []
    model = ScriptedModel(
        script=[ScriptedReply(error=InjectedError(retry_after=3)), ScriptedReply(text="ok now")]
    )
    await run(
        RunOptions(
            model=model,
            messages=USER,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, c, _d: retries.append(c.kind),
        )
    )
    assert retries == [ErrorKind.RATE_LIMIT]
    assert clock.sleeps == [3.0]  # the provider's Retry-After beat the 1 s backoff
    assert [p for p in steps[0].content] == [TextPart("ok now")]


async def test_mid_stream_disconnect_is_a_retryable_timeout() -> None:
    clock = ManualClock()
    steps = Steps()
    kinds: list[str] = []
    model = ScriptedModel(
        script=[
            ScriptedReply(text="a b c d", error=InjectedError(after_parts=3)),
            ScriptedReply(text="complete answer"),
        ]
    )
    await run(
        RunOptions(
            model=model,
            messages=USER,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, c, _d: kinds.append(c.kind),
        )
    )
    assert kinds == [ErrorKind.TIMEOUT]
    assert steps[0].content == [TextPart("complete answer")]  # nothing of the failed attempt


async def test_injected_401_fails_the_run() -> None:
    model = ScriptedModel(
        script=[ScriptedReply(error=InjectedError(status_code=401, message="bad key"))]
    )
    with pytest.raises(StreamError) as info:
        await run(RunOptions(model=model, messages=USER, persist_step=Steps()))
    assert info.value.classified.kind == ErrorKind.AUTH
    assert info.value.classified.status_code == 401
