"""Anthropic Messages against golden wire-format fixtures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from chatd.errors import ErrorKind
from chatd.loop import (
    Call,
    FakeModel,
    Interrupt,
    PersistedStep,
    RunOptions,
    RunOutcome,
    Tool,
    ToolCall,
    ToolDefinition,
    ToolResponse,
    run,
    to_response_messages,
)
from chatd.providers import ModelConfig, resolve
from chatd.providers.anthropic import AnthropicModel
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    MessagePart,
    ReasoningPart,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
    Usage,
)
from tests.loop.helpers import finish, scripted_model, text, tool_call
from tests.providers.helpers import HELLO, WEATHER, drain, failure
from tests.providers.replay import ReplayServer

P = StreamPartType
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


def claude(server: ReplayServer) -> AnthropicModel:
    config = ModelConfig("", "", base_url=server.url, api_key="sk-ant-test")
    model = resolve("anthropic:claude-sonnet-5", config=config)
    assert isinstance(model, AnthropicModel)
    return model


async def test_text_stream_yields_deltas_usage_with_cache_and_context_window(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "text")
    parts = await drain(claude(server))
    assert parts == [
        StreamPart(P.TEXT_START, id="text-0"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta="Hello"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta="! How can I"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta=" help?"),
        StreamPart(P.TEXT_END, id="text-0"),
        StreamPart(
            P.FINISH,
            finish_reason=FinishReason.STOP,
            usage=Usage(
                input_tokens=25,
                output_tokens=12,
                total_tokens=25 + 2048 + 312 + 12,
                cache_read_tokens=2048,
                cache_creation_tokens=312,
            ),
            provider_metadata={
                "anthropic": {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "stop_reason": "end_turn"},
                "context_window": 200_000,
            },
        ),
    ]
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == "Bearer sk-ant-test"
    body = request.json()
    assert body["stream"] is True
    assert body["max_tokens"] == 4096
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]


async def test_thinking_streams_as_reasoning_with_its_signature(server: ReplayServer) -> None:
    server.enqueue("anthropic", "thinking")
    parts = await drain(claude(server))
    assert parts[:-1] == [
        StreamPart(P.REASONING_START, id="reasoning-0"),
        StreamPart(P.REASONING_DELTA, id="reasoning-0", delta="The user greets me."),
        StreamPart(P.REASONING_DELTA, id="reasoning-0", delta=" A short reply."),
        StreamPart(
            P.REASONING_END,
            id="reasoning-0",
            provider_metadata={"anthropic": {"signature": SIGNATURE}},
        ),
        StreamPart(P.REASONING_START, id="reasoning-1"),
        StreamPart(
            P.REASONING_END,
            id="reasoning-1",
            provider_metadata={"anthropic": {"redacted_data": REDACTED}},
        ),
        StreamPart(P.TEXT_START, id="text-2"),
        StreamPart(P.TEXT_DELTA, id="text-2", delta="Hi there!"),
        StreamPart(P.TEXT_END, id="text-2"),
    ]
    assert parts[-1].usage is not None
    assert parts[-1].usage.reasoning_tokens == 41
    assert parts[-1].usage.output_tokens == 64


async def test_parallel_tool_use_streams_input_json_deltas_then_full_calls(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "tool_calls")
    call = Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="required")
    parts = await drain(claude(server), call)
    weather, clock = "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "toolu_01H5kQpJ3PcBdnBxFxu2oCjG"
    assert parts[:-1] == [
        StreamPart(P.TEXT_START, id="text-0"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta="Let me check both."),
        StreamPart(P.TEXT_END, id="text-0"),
        StreamPart(P.TOOL_INPUT_START, id=weather, tool_call_name="get_weather"),
        StreamPart(P.TOOL_INPUT_DELTA, id=weather, delta='{"location":'),
        StreamPart(P.TOOL_INPUT_DELTA, id=weather, delta=' "Paris"}'),
        StreamPart(P.TOOL_INPUT_END, id=weather),
        StreamPart(
            P.TOOL_CALL,
            id=weather,
            tool_call_name="get_weather",
            tool_call_input='{"location": "Paris"}',
        ),
        StreamPart(P.TOOL_INPUT_START, id=clock, tool_call_name="get_time"),
        StreamPart(P.TOOL_INPUT_END, id=clock),
        StreamPart(P.TOOL_CALL, id=clock, tool_call_name="get_time", tool_call_input="{}"),
    ]
    assert parts[-1].finish_reason == FinishReason.TOOL_CALLS
    body = server.requests[0].json()
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER.input_schema,
            "description": "Current weather for a city",
        }
    ]
    assert body["tool_choice"] == {"type": "any"}


async def test_history_converts_to_alternating_messages_with_cache_marks_and_results(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "text")
    cache = {"anthropic": {"cache_control": {"type": "ephemeral"}}}
    prompt = [
        Message(Role.SYSTEM, [TextPart("Be brief.")], provider_options=cache),
        Message(Role.USER, [TextPart("What is this?"), FilePart(b"%PDF", "application/pdf")]),
        Message(
            Role.ASSISTANT,
            [
                ReasoningPart("thinking…", {"anthropic": {"signature": "sig"}}),
                ReasoningPart("unsigned thoughts are dropped"),
                ToolCallPart("toolu_1", "get_weather", '{"location":"Paris"}'),
                ToolCallPart("toolu_2", "screenshot", ""),
                ToolCallPart("toolu_3", "get_time", "{}"),
            ],
        ),
        Message(
            Role.TOOL,
            [
                ToolResultPart("toolu_1", "get_weather", ToolResultText("sunny")),
                ToolResultPart("toolu_2", "screenshot", ToolResultMedia("UE5H", "image/png", "ui")),
                ToolResultPart("toolu_3", "get_time", ToolResultError("clock broken")),
            ],
        ),
        Message(Role.USER, [TextPart("Thanks")], provider_options=cache),
    ]
    await drain(claude(server), Call(prompt=prompt))
    body = server.requests[0].json()
    assert body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    png = {"type": "base64", "media_type": "image/png", "data": "UE5H"}
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": "JVBERg==",
                    },
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "thinking…", "signature": "sig"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "screenshot", "input": {}},
                {"type": "tool_use", "id": "toolu_3", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "image", "source": png}, {"type": "text", "text": "ui"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_3",
                    "content": "clock broken",
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]


async def test_401_is_auth_with_status_kept(server: ReplayServer) -> None:
    server.enqueue("anthropic", "401")
    classified, _ = await failure(claude(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.AUTH,
        401,
        False,
    )
    assert classified.message == (
        "Authentication with Anthropic failed. Check the API key and permissions."
    )
    assert classified.detail == "invalid x-api-key"


async def test_429_is_rate_limit_with_retry_after(server: ReplayServer) -> None:
    server.enqueue("anthropic", "429")
    classified, _ = await failure(claude(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.RATE_LIMIT,
        429,
        True,
    )
    assert classified.retry_after == 12.0
    assert len(server.requests) == 1


async def test_529_is_overloaded_and_retryable(server: ReplayServer) -> None:
    server.enqueue("anthropic", "529")
    classified, _ = await failure(claude(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        529,
        True,
    )
    assert classified.message == "Anthropic is temporarily overloaded."


async def test_500_is_a_retryable_generic_error(server: ReplayServer) -> None:
    server.enqueue("anthropic", "500")
    classified, _ = await failure(claude(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.GENERIC,
        500,
        True,
    )


async def test_overloaded_error_event_mid_stream_is_overloaded_529(server: ReplayServer) -> None:
    server.enqueue("anthropic", "error_mid_stream")
    classified, parts = await failure(claude(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        529,
        True,
    )


async def test_disconnect_mid_stream_is_a_retryable_timeout(server: ReplayServer) -> None:
    server.enqueue("anthropic", "disconnect")
    classified, parts = await failure(claude(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "Anthropic is temporarily unavailable."


async def test_stream_ending_before_message_stop_is_a_retryable_truncation(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "truncated")
    classified, parts = await failure(claude(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == (
        "Anthropic stream closed unexpectedly before the response completed."
    )


async def test_missing_key_fails_before_any_request(server: ReplayServer) -> None:
    model = resolve("anthropic:claude-sonnet-5", config=ModelConfig("", "", base_url=server.url))
    classified, _ = await failure(model)
    assert classified.kind == ErrorKind.MISSING_KEY
    assert "ANTHROPIC_API_KEY" in classified.detail
    assert server.requests == []


async def test_web_search_streams_as_a_provider_executed_call_and_result_and_goes_back(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "web_search", "text")
    model = claude(server)
    parts = await drain(model)
    search = "srvtoolu_014hJH82Qum7Td6UV8gDXThB"
    result_block = {
        "type": "web_search_tool_result",
        "tool_use_id": search,
        "content": [
            {
                "type": "web_search_result",
                "title": "Paris weather",
                "url": "https://weather.example/paris",
                "encrypted_content": "EqgfCioIARgBIiQ3YTAw",
                "page_age": "November 25, 2026",
            }
        ],
    }
    assert parts[:6] == [
        StreamPart(
            P.TOOL_INPUT_START, id=search, tool_call_name="web_search", provider_executed=True
        ),
        StreamPart(P.TOOL_INPUT_DELTA, id=search, delta='{"query": "weather paris"}'),
        StreamPart(P.TOOL_INPUT_END, id=search),
        StreamPart(
            P.TOOL_CALL,
            id=search,
            tool_call_name="web_search",
            tool_call_input='{"query": "weather paris"}',
            provider_executed=True,
        ),
        StreamPart(
            P.TOOL_RESULT,
            id=search,
            tool_call_name="web_search",
            provider_executed=True,
            provider_metadata={
                "anthropic": {"content": result_block},
                "sources": [{"url": "https://weather.example/paris", "title": "Paris weather"}],
            },
        ),
        StreamPart(P.TEXT_START, id="text-2"),
    ]
    assert parts[-1].finish_reason == FinishReason.STOP

    # The next turn sends the server tool's call and result back as Anthropic gave them.
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                ToolCallPart(
                    search, "web_search", parts[3].tool_call_input, provider_executed=True
                ),
                ToolResultPart(
                    search,
                    "web_search",
                    provider_executed=True,
                    provider_metadata=parts[4].provider_metadata or {},
                ),
                TextPart("It is sunny in Paris."),
            ],
        ),
        Message(Role.USER, [TextPart("Thanks")]),
    ]
    await drain(model, Call(prompt=history))
    assert server.requests[1].json()["messages"][1] == {
        "role": "assistant",
        "content": [
            {
                "type": "server_tool_use",
                "id": search,
                "name": "web_search",
                "input": {"query": "weather paris"},
            },
            result_block,
            {"type": "text", "text": "It is sunny in Paris."},
        ],
    }


async def test_tool_choice_none_still_offers_the_tools(server: ReplayServer) -> None:
    server.enqueue("anthropic", "text")
    await drain(claude(server), Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="none"))
    body = server.requests[0].json()
    assert (len(body["tools"]), body["tool_choice"]) == (1, {"type": "none"})


async def test_provider_defined_tools_go_out_in_anthropics_own_shape(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "text")
    web_search = ToolDefinition(
        "web_search",
        provider_type="anthropic.web_search_20250305",
        provider_args={"max_uses": 3, "allowed_domains": ["example.com"]},
    )
    computer = ToolDefinition(
        "computer",
        provider_type="anthropic.computer_20250124",
        provider_args={"display_width_px": 1024, "display_height_px": 768},
        provider_options=CACHE,
    )
    elsewhere = ToolDefinition("web_search", provider_type="openai.web_search")
    tools = [WEATHER, web_search, computer, elsewhere]
    await drain(claude(server), Call(prompt=HELLO.prompt, tools=tools))
    assert server.requests[0].json()["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER.input_schema,
        },
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 3,
            "allowed_domains": ["example.com"],
        },
        {
            "type": "computer_20250124",
            "name": "computer",
            "display_width_px": 1024,
            "display_height_px": 768,
            "cache_control": {"type": "ephemeral"},
        },
    ]


async def test_only_another_providers_tools_send_no_tools_at_all(server: ReplayServer) -> None:
    server.enqueue("anthropic", "text")
    tools = [ToolDefinition("web_search", provider_type="openai.web_search")]
    await drain(claude(server), Call(prompt=HELLO.prompt, tools=tools))
    body = server.requests[0].json()
    assert "tools" not in body and "tool_choice" not in body


# --- the model hooks: Anthropic's quirks as the loop meets them -------------------------

CACHE = {"anthropic": {"cache_control": {"type": "ephemeral"}}}
# The hooks do no I/O: a model without a server or key is enough.
CLAUDE = AnthropicModel(ModelConfig("anthropic", "claude-sonnet-5"))


class ClaudeShaped(FakeModel):
    """FakeModel's scripted streams behind AnthropicModel's hooks."""

    def prepare_prompt(self, messages: list[Message]) -> list[Message]:
        return CLAUDE.prepare_prompt(messages)

    def persistable_content(self, content: list[MessagePart]) -> list[MessagePart]:
        return CLAUDE.persistable_content(content)


class Steps(list[PersistedStep]):
    async def __call__(self, step: PersistedStep) -> None:
        self.append(step)


def _web_search(call_id: str = "ws1") -> list[StreamPart]:
    return [
        *tool_call(call_id, "web_search", '{"q":"x"}', provider_executed=True),
        StreamPart(P.TOOL_RESULT, id=call_id, tool_call_name="web_search", provider_executed=True),
    ]


async def _echo(call: ToolCall) -> ToolResponse:
    return ToolResponse.text(f"echo:{call.input}")


def test_prompt_caching_marks_the_system_prefix_and_the_last_two_messages() -> None:
    history = [
        Message(Role.SYSTEM, [TextPart("sys1")]),
        Message(Role.SYSTEM, [TextPart("sys2")]),
        Message(Role.USER, [TextPart("u1")]),
        Message(Role.ASSISTANT, [TextPart("a1")]),
        Message(Role.USER, [TextPart("u2")]),
    ]
    prompt = CLAUDE.prepare_prompt(history)
    assert [i for i, m in enumerate(prompt) if m.provider_options] == [1, 3, 4]
    assert prompt[1].provider_options == CACHE
    assert [m.content for m in prompt] == [m.content for m in history]
    # The loop's history is not changed by the shaping.
    assert all(not m.provider_options for m in history)


async def test_the_loop_sends_cache_breakpoints_through_the_model_hook(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "text")
    history = [Message(Role.SYSTEM, [TextPart("Be brief.")]), *HELLO.prompt]
    await run(RunOptions(model=claude(server), messages=history, persist_step=Steps()))
    body = server.requests[0].json()
    mark = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": mark}]
    assert body["messages"][-1]["content"][-1]["cache_control"] == mark


async def test_run_drops_an_unpaired_server_tool_before_persist() -> None:
    steps = Steps()
    model = scripted_model(
        [*tool_call("p1", "web_search", provider_executed=True), finish()],
        model_type=ClaudeShaped,
    )
    await run(RunOptions(model=model, persist_step=steps))
    assert steps == []


async def test_run_keeps_a_paired_web_search_before_persist() -> None:
    steps = Steps()
    model = scripted_model([*_web_search(), *text("t", "found"), finish()], model_type=ClaudeShaped)
    await run(RunOptions(model=model, persist_step=steps))
    kinds = [type(p).__name__ for p in steps[0].content]
    assert kinds == ["ToolCallPart", "ToolResultPart", "TextPart"]


async def test_run_sanitizes_a_server_tool_in_history_before_the_request() -> None:
    history = [
        Message(
            Role.ASSISTANT,
            [ToolCallPart("p1", "web_search", provider_executed=True), TextPart("hi")],
        ),
    ]
    model = scripted_model([*text("t", "x"), finish()], model_type=ClaudeShaped)
    await run(RunOptions(model=model, messages=history, persist_step=Steps()))
    assert model.calls[0].prompt[0].content == [TextPart("hi")]


async def test_run_drops_an_emptied_assistant_message_and_merges_the_user_turns() -> None:
    # Upstream TestRun_AnthropicSanitizesProviderToolBeforeRequest.
    history = [
        Message(Role.USER, [TextPart("search for coder")]),
        Message(
            Role.ASSISTANT,
            [ToolCallPart("ws-1", "web_search", '{"query":"coder"}', provider_executed=True)],
        ),
        Message(Role.USER, [TextPart("continue")]),
    ]
    model = scripted_model([*text("t", "done"), finish()], model_type=ClaudeShaped)
    await run(RunOptions(model=model, messages=history, persist_step=Steps()))
    [prompt] = model.calls[0].prompt
    assert prompt.role == Role.USER
    assert prompt.content == [TextPart("search for coder"), TextPart("continue")]


def test_only_the_turns_around_a_dropped_message_merge() -> None:
    orphan = Message(Role.ASSISTANT, [ToolCallPart("ws-1", "web_search", provider_executed=True)])
    history = [
        Message(Role.USER, [TextPart("a")]),
        Message(Role.USER, [TextPart("b")]),
        orphan,
        orphan,
        Message(Role.USER, [TextPart("c")]),
        Message(Role.ASSISTANT, [TextPart("d")]),
    ]
    prompt = CLAUDE.prepare_prompt(history)
    assert [m.content for m in prompt] == [
        [TextPart("a")],
        [TextPart("b"), TextPart("c")],
        [TextPart("d")],
    ]


@pytest.mark.parametrize("offered", [True, False], ids=["tool enabled", "tool disabled"])
async def test_run_keeps_a_paired_web_search_in_history(offered: bool) -> None:
    # Upstream TestRun_AnthropicProviderToolPreRequestGuard, "allowed web search
    # survives when provider tool is enabled" / "web search history survives when
    # provider tool is disabled".
    pair: list[MessagePart] = [
        ToolCallPart("ws-1", "web_search", '{"query":"coder"}', provider_executed=True),
        ToolResultPart("ws-1", "web_search", provider_executed=True),
    ]
    history = [
        Message(Role.USER, [TextPart("search and read")]),
        Message(Role.ASSISTANT, [*pair, ToolCallPart("tc-1", "read_file", "{}")]),
        Message(Role.TOOL, [ToolResultPart("tc-1", "read_file", ToolResultText("file"))]),
        Message(Role.USER, [TextPart("continue")]),
    ]
    web_search = ToolDefinition("web_search", provider_type="anthropic.web_search_20250305")
    model = scripted_model([*text("t", "done"), finish()], model_type=ClaudeShaped)
    await run(
        RunOptions(
            model=model,
            messages=history,
            provider_tools=[web_search] if offered else [],
            persist_step=Steps(),
        )
    )
    prompt = model.calls[0].prompt
    assert [m.content for m in prompt] == [m.content for m in history]


async def test_run_sanitizes_a_web_search_before_the_continuation() -> None:
    model = scripted_model(
        [
            *tool_call("ws1", "web_search", provider_executed=True),
            *tool_call("c1", "echo"),
            finish(FinishReason.TOOL_CALLS),
        ],
        [*text("t", "done"), finish()],
        model_type=ClaudeShaped,
    )
    steps = Steps()
    await run(
        RunOptions(model=model, tools=[Tool("echo", "", _echo)], max_steps=3, persist_step=steps)
    )
    first = steps[0].content
    assert [p.tool_call_id for p in first if isinstance(p, ToolCallPart)] == ["c1"]
    prompt_calls = [
        p.tool_call_id
        for m in model.calls[1].prompt
        for p in m.content
        if isinstance(p, ToolCallPart)
    ]
    assert prompt_calls == ["c1"]


async def test_run_drops_an_unpaired_server_tool_before_the_requires_action_persist() -> None:
    # Upstream sanitises the step it hands to the client ("dynamic_tool_persist") too.
    model = scripted_model(
        [
            *tool_call("ws1", "web_search", provider_executed=True),
            *tool_call("c1", "client_tool"),
            finish(FinishReason.TOOL_CALLS),
        ],
        model_type=ClaudeShaped,
    )
    steps = Steps()
    outcome = await run(
        RunOptions(model=model, dynamic_tool_names={"client_tool"}, persist_step=steps)
    )
    assert outcome is RunOutcome.REQUIRES_ACTION
    [step] = steps
    assert [p.tool_call_id for p in step.content if isinstance(p, ToolCallPart)] == ["c1"]
    assert [c.tool_call_id for c in step.pending_dynamic_tool_calls] == ["c1"]


async def _interrupted_run(parts: list[StreamPart]) -> Steps:
    streamed = asyncio.Event()

    async def partial() -> AsyncIterator[StreamPart]:
        for part in parts:
            yield part
        streamed.set()
        await asyncio.sleep(3600)

    interrupt = Interrupt()
    steps = Steps()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=ClaudeShaped(stream_fn=lambda _c: partial()),
                persist_step=steps,
                interrupt=interrupt,
            )
        )
    )
    await streamed.wait()
    interrupt.interrupt()
    outcome = await task
    assert outcome is RunOutcome.INTERRUPTED
    return steps


async def test_run_interrupted_web_search_does_not_persist_a_synthetic_result() -> None:
    steps = await _interrupted_run(tool_call("ws1", "web_search", provider_executed=True))
    assert steps == []


async def test_run_interrupted_server_tool_keeps_the_local_synthetic_result() -> None:
    steps = await _interrupted_run(
        [
            *tool_call("ws1", "web_search", provider_executed=True),
            *tool_call("c1", "read_file"),
        ]
    )
    [step] = steps
    calls = [p.tool_call_id for p in step.content if isinstance(p, ToolCallPart)]
    results = [p for p in step.content if isinstance(p, ToolResultPart)]
    assert calls == ["c1"]
    assert [r.tool_call_id for r in results] == ["c1"]
    assert results[0].is_error


# --- a replayed web-search turn through the loop ----------------------------------------

WEB_SEARCH = ToolDefinition(
    "web_search", provider_type="anthropic.web_search_20250305", provider_args={"max_uses": 5}
)
SEARCH_ID = "srvtoolu_01WkQy8aYb2RTcTAmPKxTmTm"
RESULTS = [
    {
        "type": "web_search_result",
        "title": "Releases · coder/coder",
        "url": "https://github.com/coder/coder/releases",
        "encrypted_content": "EpcBCioIAxgCIiQ4ODk4YTFkYy0yMjBj",
        "page_age": "3 days ago",
    },
    {
        "type": "web_search_result",
        "title": "Changelog <v2.20> & notes",
        "url": "https://coder.com/changelog?tab=releases&x=1",
        "encrypted_content": "Eo0CCioIAxgCIiQ4ODk4YTFkYy0yMjBjLTRh",
    },
]


def _search_run(model: AnthropicModel, history: list[Message], **kw: Any) -> RunOptions:
    return RunOptions(
        model=model, messages=history, provider_tools=[WEB_SEARCH], persist_step=Steps(), **kw
    )


async def test_replayed_web_search_is_persisted_as_provider_parts_and_sent_back(
    server: ReplayServer,
) -> None:
    server.enqueue("anthropic", "web_search_cited", "text")
    model = claude(server)
    published: list[MessagePart] = []
    opts = _search_run(model, HELLO.prompt, publish_message_part=lambda _r, p: published.append(p))
    assert await run(opts) is RunOutcome.FINISHED
    assert server.requests[0].json()["tools"] == [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    ]
    [step] = cast("Steps", opts.persist_step)
    call, result = (p for p in step.content if isinstance(p, ToolCallPart | ToolResultPart))
    assert isinstance(call, ToolCallPart) and isinstance(result, ToolResultPart)
    assert (call.tool_call_id, call.tool_name, call.input, call.provider_executed) == (
        SEARCH_ID,
        "web_search",
        '{"query": "coder latest release"}',
        True,
    )
    assert (result.tool_call_id, result.provider_executed, result.output) == (
        SEARCH_ID,
        True,
        None,
    )
    assert result.provider_metadata == {
        "anthropic": {
            "content": {
                "type": "web_search_tool_result",
                "tool_use_id": SEARCH_ID,
                "content": RESULTS,
            }
        },
        "sources": [
            {"url": "https://github.com/coder/coder/releases", "title": "Releases · coder/coder"},
            {
                "url": "https://coder.com/changelog?tab=releases&x=1",
                "title": "Changelog <v2.20> & notes",
            },
        ],
    }
    texts = [p.text for p in step.content if isinstance(p, TextPart)]
    assert texts == ["I'll search for the latest release.", "The latest release is v2.20.0", "."]
    # Published live as they arrived: the call, then its result.
    whole = [p for p in published if isinstance(p, ToolResultPart) or p == call]
    assert [type(p) for p in whole] == [ToolCallPart, ToolResultPart]

    # The next turn sends the provider's call and result back in Anthropic's form.
    history = [
        *HELLO.prompt,
        *to_response_messages(step.content),
        Message(Role.USER, [TextPart("Thanks")]),
    ]
    assert await run(_search_run(model, history)) is RunOutcome.FINISHED
    assistant = server.requests[1].json()["messages"][1]
    assert assistant["role"] == "assistant"
    assert [{k: v for k, v in b.items() if k != "cache_control"} for b in assistant["content"]] == [
        {"type": "text", "text": "I'll search for the latest release."},
        {
            "type": "server_tool_use",
            "id": SEARCH_ID,
            "name": "web_search",
            "input": {"query": "coder latest release"},
        },
        {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": RESULTS},
        {"type": "text", "text": "The latest release is v2.20.0"},
        {"type": "text", "text": "."},
    ]


async def test_interrupt_during_a_replayed_web_search_persists_no_synthetic_result(
    server: ReplayServer,
) -> None:
    # The stream stalls after the server_tool_use block: the search is in flight.
    server.enqueue("anthropic", "web_search_stall", "text")
    model = claude(server)
    interrupt = Interrupt()

    def publish(_role: Role, part: MessagePart) -> None:
        if isinstance(part, ToolCallPart) and part.provider_executed and not part.args_delta:
            interrupt.interrupt()

    opts = _search_run(model, HELLO.prompt, publish_message_part=publish, interrupt=interrupt)
    assert await run(opts) is RunOutcome.INTERRUPTED
    [step] = cast("Steps", opts.persist_step)
    # The text before the search is kept; the search has no result, and none is made
    # up for it (only Anthropic can give one); the unpaired call goes with it.
    assert step.content == [TextPart("I'll search for the latest release.")]
    assert not [p for p in step.content if isinstance(p, ToolResultPart)]

    # The following request is valid: no server_tool_use without its result. A
    # history that does hold the orphan call (persisted under another model) loses
    # it to the sanitiser.
    orphan = ToolCallPart(SEARCH_ID, "web_search", '{"query": "coder"}', provider_executed=True)
    history = [
        *HELLO.prompt,
        Message(Role.ASSISTANT, [*step.content, orphan]),
        Message(Role.USER, [TextPart("continue")]),
    ]
    assert await run(_search_run(model, history)) is RunOutcome.FINISHED
    messages = server.requests[1].json()["messages"]
    blocks = [b["type"] for m in messages for b in m["content"]]
    assert blocks == ["text", "text", "text"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]


async def test_another_providers_search_in_history_is_not_sent_to_anthropic(
    server: ReplayServer,
) -> None:
    # An OpenAI web search (the chat switched models) has no Anthropic result block:
    # a server_tool_use without one would be rejected, so neither goes.
    server.enqueue("anthropic", "text")
    openai_result = {"openai": {"item_id": "ws_1", "action": {"type": "search", "query": "x"}}}
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                ToolCallPart("ws_1", "web_search", '{"query": "x"}', provider_executed=True),
                ToolResultPart(
                    "ws_1", "web_search", provider_executed=True, provider_metadata=openai_result
                ),
                TextPart("Found it."),
            ],
        ),
        Message(Role.USER, [TextPart("Thanks")]),
    ]
    await drain(claude(server), Call(prompt=history, tools=[WEB_SEARCH]))
    messages = server.requests[0].json()["messages"]
    assert [[b["type"] for b in m["content"]] for m in messages] == [["text"], ["text"], ["text"]]
