"""Each provider through `chatd.loop.run` against the replay server: 429, tool step, answer."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chatd.errors import ClassifiedError, ErrorKind
from chatd.loop import (
    Interrupt,
    ManualClock,
    PersistedStep,
    RunOptions,
    RunOutcome,
    StreamError,
    Tool,
    ToolCall,
    ToolResponse,
    run,
)
from chatd.providers import ModelConfig, resolve
from chatd.types import Message, Role, TextPart, ToolCallPart, ToolResultPart
from tests.providers.replay import ReplayServer

USER = [Message(Role.USER, [TextPart("Weather and time in Paris?")])]


@dataclass(frozen=True)
class Case:
    spec: str
    fixtures: str
    path: str  # appended to the server URL for base_url
    answer: str  # the fixture of the final step
    retry_after: float  # what the 429 fixture asks for, at least the 1 s backoff


CASES = [
    Case("openai-chat:gpt-4o", "openai_chat", "/v1", "text", 7.0),
    Case("openai:gpt-5", "openai_responses", "/v1", "answer", 1.0),
    Case("anthropic:claude-sonnet-5", "anthropic", "", "text", 12.0),
    Case("google:gemini-2.5-flash", "google", "", "answer", 7.0),
]


async def _weather(call: ToolCall) -> ToolResponse:
    return ToolResponse.text(f"sunny ({call.input})")


async def _time(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text("12:00")


TOOLS = [
    Tool(
        "get_weather",
        "Current weather for a city",
        _weather,
        {"type": "object", "properties": {"location": {"type": "string"}}},
    ),
    Tool("get_time", "The time in a time zone", _time),
]


class Steps(list[PersistedStep]):
    async def __call__(self, step: PersistedStep) -> None:
        self.append(step)


@pytest.mark.parametrize("case", CASES, ids=[c.fixtures for c in CASES])
async def test_two_steps_with_tool_calls_after_a_429_retry(
    server: ReplayServer, case: Case
) -> None:
    server.enqueue(case.fixtures, "429", "tool_calls", case.answer)
    model = resolve(
        case.spec, config=ModelConfig("", "", base_url=server.url + case.path, api_key="k")
    )
    clock = ManualClock()
    retries: list[ClassifiedError] = []
    steps = Steps()
    await run(
        RunOptions(
            model=model,
            messages=list(USER),
            tools=TOOLS,
            max_steps=5,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _attempt, _err, classified, _delay: retries.append(classified),
        )
    )
    assert [(c.kind, c.status_code) for c in retries] == [(ErrorKind.RATE_LIMIT, 429)]
    assert clock.sleeps == [case.retry_after]
    assert len(server.requests) == 3

    first, second = steps
    calls = [p for p in first.content if isinstance(p, ToolCallPart)]
    results = [p for p in first.content if isinstance(p, ToolResultPart)]
    assert [c.tool_name for c in calls] == ["get_weather", "get_time"]
    assert [r.tool_call_id for r in results] == [c.tool_call_id for c in calls]
    assert not any(r.is_error for r in results)
    assert first.context_limit is not None and first.context_limit > 0
    assert first.usage.output_tokens > 0

    assert [p for p in second.content if isinstance(p, TextPart)]
    assert not [p for p in second.content if isinstance(p, ToolCallPart)]
    # The second request carried both tool results back in the provider's format.
    sent = server.requests[2].body.decode()
    assert "12:00" in sent and "sunny" in sent


async def test_disconnect_mid_stream_is_retried_and_only_the_new_attempt_is_kept(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "disconnect", "text")
    model = resolve(
        "anthropic:claude-sonnet-5", config=ModelConfig("", "", base_url=server.url, api_key="k")
    )
    clock = ManualClock()
    steps = Steps()
    kinds: list[str] = []
    await run(
        RunOptions(
            model=model,
            messages=list(USER),
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, classified, _d: kinds.append(classified.kind),
        )
    )
    assert kinds == [ErrorKind.TIMEOUT]
    [step] = steps
    assert [p.text for p in step.content if isinstance(p, TextPart)] == ["Hello! How can I help?"]


async def test_auth_failure_ends_the_run_without_retrying(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "401")
    model = resolve(
        "openai-chat:gpt-4o", config=ModelConfig("", "", base_url=server.url + "/v1", api_key="bad")
    )
    with pytest.raises(StreamError) as raised:
        await run(
            RunOptions(model=model, messages=list(USER), persist_step=Steps(), clock=ManualClock())
        )
    assert (raised.value.classified.kind, raised.value.classified.status_code) == (
        ErrorKind.AUTH,
        401,
    )
    assert len(server.requests) == 1


async def test_missing_key_ends_the_run_before_any_request(server: ReplayServer) -> None:
    model = resolve("google:gemini-2.5-flash", config=ModelConfig("", "", base_url=server.url))
    with pytest.raises(StreamError) as raised:
        await run(
            RunOptions(model=model, messages=list(USER), persist_step=Steps(), clock=ManualClock())
        )
    assert raised.value.classified.kind == ErrorKind.MISSING_KEY
    assert raised.value.classified.provider == "google"
    assert server.requests == []


async def test_responses_chain_broken_mid_run_resends_the_full_history(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "tool_calls", "previous_not_found", "answer")
    model = resolve(
        "openai:gpt-5", config=ModelConfig("", "", base_url=server.url + "/v1", api_key="k")
    )
    clock = ManualClock()
    steps = Steps()
    retries: list[ClassifiedError] = []
    await run(
        RunOptions(
            model=model,
            messages=list(USER),
            tools=TOOLS,
            max_steps=5,
            persist_step=steps,
            clock=clock,
            on_retry=lambda _a, _e, classified, _d: retries.append(classified),
        )
    )
    assert [c.chain_broken for c in retries] == [True]
    chained, resent = server.requests[1].json(), server.requests[2].json()
    assert chained["previous_response_id"] == "resp_68b1tools"
    assert [item.get("type") for item in chained["input"]] == ["function_call_output"] * 2
    assert "previous_response_id" not in resent
    assert resent["input"][0] == {
        "role": "user",
        "content": [{"type": "input_text", "text": "Weather and time in Paris?"}],
    }
    assert steps[-1].usage.output_tokens == 8


async def test_interrupt_mid_stream_closes_the_sdk_stream_and_persists_the_partial_text(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "stall")
    model = resolve(
        "openai-chat:gpt-4o", config=ModelConfig("", "", base_url=server.url + "/v1", api_key="k")
    )
    interrupt = Interrupt()
    steps = Steps()

    def publish(_role: Role, part: object) -> None:
        if isinstance(part, TextPart) and part.text == "Partial":
            interrupt.interrupt()

    outcome = await run(
        RunOptions(
            model=model,
            messages=list(USER),
            persist_step=steps,
            publish_message_part=publish,
            interrupt=interrupt,
            clock=ManualClock(),
        )
    )
    assert outcome is RunOutcome.INTERRUPTED
    [step] = steps
    assert [p.text for p in step.content if isinstance(p, TextPart)] == ["Partial"]
