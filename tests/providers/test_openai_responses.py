"""OpenAI Responses API against golden wire-format fixtures, including chaining."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatd.errors import ClassifiedError, ErrorKind
from chatd.loop import (
    Call,
    FakeModel,
    ManualClock,
    ModelSettings,
    PersistedStep,
    RunOptions,
    Tool,
    ToolCall,
    ToolDefinition,
    ToolResponse,
    run,
    stream_from_parts,
)
from chatd.providers import ModelConfig, resolve
from chatd.providers.openai_responses import OpenAIResponsesModel
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
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
from tests.loop.helpers import text
from tests.providers.helpers import HELLO, WEATHER, drain, failure
from tests.providers.replay import ReplayServer

P = StreamPartType
TEXT_RESPONSE = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
TEXT_ITEM = "msg_67ccd2bf17f0819081ff3bb2cf6508e6"


def gpt(server: ReplayServer, **options: object) -> OpenAIResponsesModel:
    config = ModelConfig(
        "", "", base_url=f"{server.url}/v1", api_key="sk-test", provider_options=options
    )
    model = resolve("openai:gpt-5", config=config)
    assert isinstance(model, OpenAIResponsesModel)
    return model


def meta(item_id: str, response_id: str, **extra: str) -> dict[str, object]:
    return {"openai": {"item_id": item_id, "response_id": response_id, **extra}}


async def test_text_stream_yields_deltas_usage_and_context_window(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "text")
    parts = await drain(gpt(server))
    assert parts == [
        StreamPart(P.TEXT_START, id=TEXT_ITEM),
        StreamPart(P.TEXT_DELTA, id=TEXT_ITEM, delta="Hello"),
        StreamPart(P.TEXT_DELTA, id=TEXT_ITEM, delta="! How can I"),
        StreamPart(P.TEXT_DELTA, id=TEXT_ITEM, delta=" help?"),
        StreamPart(P.TEXT_END, id=TEXT_ITEM, provider_metadata=meta(TEXT_ITEM, TEXT_RESPONSE)),
        StreamPart(
            P.FINISH,
            finish_reason=FinishReason.STOP,
            usage=Usage(
                input_tokens=120, output_tokens=9, total_tokens=1409, cache_read_tokens=1280
            ),
            provider_metadata={"openai": {"response_id": TEXT_RESPONSE}, "context_window": 400_000},
        ),
    ]
    [request] = server.requests
    assert request.path == "/v1/responses"
    body = request.json()
    assert body["stream"] is True
    assert body["input"] == [{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}]
    assert "previous_response_id" not in body


async def test_reasoning_summaries_stream_as_reasoning_with_encrypted_content(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "reasoning")
    parts = await drain(gpt(server, reasoning={"effort": "low", "summary": "auto"}))
    rs, rid = "rs_68af0c1a2b3c", "resp_68af0reasoning"
    reasoning_meta = meta(rs, rid, encrypted_content="gAAAAABo_encrypted_reasoning_blob")
    assert parts[:-1] == [
        StreamPart(P.REASONING_START, id=f"{rs}:0"),
        StreamPart(P.REASONING_DELTA, id=f"{rs}:0", delta="**Greeting**"),
        StreamPart(P.REASONING_DELTA, id=f"{rs}:0", delta=" The user says hello."),
        StreamPart(P.REASONING_START, id=f"{rs}:1"),
        StreamPart(P.REASONING_DELTA, id=f"{rs}:1", delta="A short reply fits."),
        StreamPart(P.REASONING_END, id=f"{rs}:0", provider_metadata=reasoning_meta),
        StreamPart(P.REASONING_END, id=f"{rs}:1", provider_metadata=reasoning_meta),
        StreamPart(P.TEXT_START, id="msg_68af0d"),
        StreamPart(P.TEXT_DELTA, id="msg_68af0d", delta="Hi!"),
        StreamPart(P.TEXT_END, id="msg_68af0d", provider_metadata=meta("msg_68af0d", rid)),
    ]
    assert parts[-1].usage == Usage(
        input_tokens=12, output_tokens=80, total_tokens=92, reasoning_tokens=64
    )
    assert server.requests[0].json()["reasoning"] == {"effort": "low", "summary": "auto"}


async def test_parallel_function_calls_stream_arguments_then_full_calls(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "tool_calls")
    call = Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="get_weather")
    parts = await drain(gpt(server), call)
    rid = "resp_68b1tools"
    assert parts[:-1] == [
        StreamPart(P.TOOL_INPUT_START, id="call_weather_1", tool_call_name="get_weather"),
        StreamPart(P.TOOL_INPUT_DELTA, id="call_weather_1", delta='{"location"'),
        StreamPart(P.TOOL_INPUT_DELTA, id="call_weather_1", delta=':"Paris"}'),
        StreamPart(P.TOOL_INPUT_END, id="call_weather_1"),
        StreamPart(
            P.TOOL_CALL,
            id="call_weather_1",
            tool_call_name="get_weather",
            tool_call_input='{"location":"Paris"}',
            provider_metadata=meta("fc_68b1a", rid),
        ),
        StreamPart(P.TOOL_INPUT_START, id="call_time_2", tool_call_name="get_time"),
        StreamPart(P.TOOL_INPUT_DELTA, id="call_time_2", delta="{}"),
        StreamPart(P.TOOL_INPUT_END, id="call_time_2"),
        StreamPart(
            P.TOOL_CALL,
            id="call_time_2",
            tool_call_name="get_time",
            tool_call_input="{}",
            provider_metadata=meta("fc_68b1b", rid),
        ),
    ]
    assert parts[-1].finish_reason == FinishReason.TOOL_CALLS
    body = server.requests[0].json()
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER.input_schema,
            "strict": False,
            "description": "Current weather for a city",
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}


def _history_after_tool_calls() -> list[Message]:
    rid = "resp_68b1tools"
    return [
        Message(Role.SYSTEM, [TextPart("Be brief.")]),
        Message(Role.USER, [TextPart("Weather?"), FilePart(b"PNG", "image/png")]),
        Message(
            Role.ASSISTANT,
            [
                ReasoningPart("Think.", meta("rs_1", rid, encrypted_content="enc")),
                ReasoningPart("Unencrypted reasoning stays home.", meta("rs_2", rid)),
                ToolCallPart(
                    "call_weather_1",
                    "get_weather",
                    '{"location":"Paris"}',
                    provider_metadata=meta("fc_68b1a", rid),
                ),
                ToolCallPart("call_shot", "screenshot", "{}", provider_metadata=meta("fc_2", rid)),
                ToolCallPart(
                    "call_time_2", "get_time", "{}", provider_metadata=meta("fc_68b1b", rid)
                ),
            ],
        ),
        Message(
            Role.TOOL,
            [
                ToolResultPart("call_weather_1", "get_weather", ToolResultText("sunny")),
                ToolResultPart("call_shot", "screenshot", ToolResultMedia("UE5H", "image/png")),
                ToolResultPart("call_time_2", "get_time", ToolResultError("clock broken")),
            ],
        ),
    ]


TOOL_OUTPUTS = [
    {"type": "function_call_output", "call_id": "call_weather_1", "output": "sunny"},
    {
        "type": "function_call_output",
        "call_id": "call_shot",
        "output": [{"type": "input_image", "image_url": "data:image/png;base64,UE5H"}],
    },
    {"type": "function_call_output", "call_id": "call_time_2", "output": "clock broken"},
]
FULL_HISTORY = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Weather?"},
            {"type": "input_image", "image_url": "data:image/png;base64,UE5H"},
        ],
    },
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Think."}],
        "encrypted_content": "enc",
    },
    {
        "type": "function_call",
        "call_id": "call_weather_1",
        "name": "get_weather",
        "arguments": '{"location":"Paris"}',
    },
    {"type": "function_call", "call_id": "call_shot", "name": "screenshot", "arguments": "{}"},
    {"type": "function_call", "call_id": "call_time_2", "name": "get_time", "arguments": "{}"},
    *TOOL_OUTPUTS,
]


async def test_next_step_chains_on_the_stored_response_and_sends_only_new_items(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "answer")
    await drain(gpt(server), Call(prompt=_history_after_tool_calls()))
    body = server.requests[0].json()
    assert body["previous_response_id"] == "resp_68b1tools"
    assert body["input"] == TOOL_OUTPUTS


async def test_previous_response_not_found_is_chain_broken_and_the_retry_resends_history(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "previous_not_found", "answer")
    model = gpt(server)
    call = Call(prompt=_history_after_tool_calls())
    classified, _ = await failure(model, call)
    assert (classified.kind, classified.retryable, classified.chain_broken) == (
        ErrorKind.GENERIC,
        True,
        True,
    )
    assert classified.status_code == 400
    parts = await drain(model, call)
    assert parts[-1].finish_reason == FinishReason.STOP
    retried = server.requests[1].json()
    assert "previous_response_id" not in retried
    assert retried["input"] == FULL_HISTORY


async def test_store_off_sends_full_history_and_asks_for_encrypted_reasoning(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "answer")
    settings = ModelSettings(max_output_tokens=100, temperature=0.5)
    await drain(
        gpt(server, store=False), Call(prompt=_history_after_tool_calls(), settings=settings)
    )
    body = server.requests[0].json()
    assert "previous_response_id" not in body
    assert body["input"] == FULL_HISTORY
    assert body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content"]
    assert (body["max_output_tokens"], body["temperature"]) == (100, 0.5)


async def test_incomplete_for_max_output_tokens_finishes_with_length(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "incomplete")
    parts = await drain(gpt(server))
    assert parts[-1].finish_reason == FinishReason.LENGTH


async def test_401_is_auth_with_status_kept(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "401")
    classified, _ = await failure(gpt(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.AUTH,
        401,
        False,
    )


async def test_429_is_rate_limit_with_millisecond_retry_after(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "429")
    classified, _ = await failure(gpt(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.RATE_LIMIT,
        429,
        True,
    )
    assert classified.retry_after == 0.12


async def test_500_is_a_retryable_generic_error(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "500")
    classified, _ = await failure(gpt(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.GENERIC,
        500,
        True,
    )


async def test_error_event_mid_stream_is_a_retryable_server_error(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "error_mid_stream")
    classified, parts = await failure(gpt(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.GENERIC,
        500,
        True,
    )


async def test_failed_response_is_classified_by_its_error_code(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "failed")
    classified, parts = await failure(gpt(server))
    assert parts == []
    assert (classified.kind, classified.status_code) == (ErrorKind.RATE_LIMIT, 429)


async def test_disconnect_mid_stream_is_a_retryable_timeout(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "disconnect")
    classified, parts = await failure(gpt(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)


async def test_stream_ending_without_terminal_event_is_a_retryable_truncation(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "truncated")
    classified, _ = await failure(gpt(server))
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "OpenAI stream closed unexpectedly before the response completed."


async def test_missing_key_fails_before_any_request(server: ReplayServer) -> None:
    model = resolve("openai:gpt-5", config=ModelConfig("", "", base_url=server.url))
    classified, _ = await failure(model)
    assert classified.kind == ErrorKind.MISSING_KEY
    assert server.requests == []


async def test_no_chaining_on_a_response_whose_history_was_rewritten(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "tool_calls", "answer")
    model = gpt(server)
    parts = await drain(model)  # resp_68b1tools answered a one-message prompt
    calls = [p for p in parts if p.type == P.TOOL_CALL]
    assistant = Message(
        Role.ASSISTANT,
        [
            ToolCallPart(
                c.id,
                c.tool_call_name,
                c.tool_call_input,
                provider_metadata=c.provider_metadata or {},
            )
            for c in calls
        ],
    )
    results = Message(
        Role.TOOL, [ToolResultPart(c.id, c.tool_call_name, ToolResultText("ok")) for c in calls]
    )
    # A summary now stands before the call (as compaction leaves it): the stored
    # chain would carry the pre-summary context, so the full history goes instead.
    summary = Message(Role.USER, [TextPart("Summary of earlier conversation.")])
    await drain(model, Call(prompt=[summary, *HELLO.prompt, assistant, results]))
    body = server.requests[1].json()
    assert "previous_response_id" not in body
    assert len(body["input"]) == 2 + 2 + 2  # two user messages, two calls, two outputs


async def test_503_engine_overloaded_is_overloaded(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "503_overloaded")
    classified, _ = await failure(gpt(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        503,
        True,
    )


async def test_tool_choice_none_still_offers_the_tools(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "text")
    await drain(gpt(server), Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="none"))
    body = server.requests[0].json()
    assert (len(body["tools"]), body["tool_choice"]) == (1, "none")


async def test_raw_reasoning_text_of_open_weight_models_streams_as_reasoning(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "reasoning_text")
    parts = await drain(gpt(server))
    block = "rs_oss_1:text"
    assert parts[:4] == [
        StreamPart(P.REASONING_START, id=block),
        StreamPart(P.REASONING_DELTA, id=block, delta="User greets."),
        StreamPart(P.REASONING_DELTA, id=block, delta=" Reply."),
        StreamPart(P.REASONING_END, id=block, provider_metadata=meta("rs_oss_1", TEXT_RESPONSE)),
    ]
    assert [p.type for p in parts[4:]] == [
        P.TEXT_START,
        P.TEXT_DELTA,
        P.TEXT_DELTA,
        P.TEXT_DELTA,
        P.TEXT_END,
        P.FINISH,
    ]


# --- the model hook: a caller's previous_response_id as the loop meets it ----------------

# The hook does no I/O: a model without a server or key is enough.
GPT = OpenAIResponsesModel(ModelConfig("openai", "gpt-5"))


class GptChained(FakeModel):
    """FakeModel's streams behind OpenAIResponsesModel's chain hook."""

    def break_response_chain(self, provider_options: dict[str, Any]) -> dict[str, Any] | None:
        return GPT.break_response_chain(provider_options)


class Steps(list[PersistedStep]):
    async def __call__(self, step: PersistedStep) -> None:
        self.append(step)


def test_break_response_chain_drops_previous_response_id_and_keeps_the_rest() -> None:
    options: dict[str, Any] = {
        "openai": {"previous_response_id": "resp_1", "store": True},
        "other": {"x": 1},
        "flag": True,
    }
    assert GPT.break_response_chain(options) == {
        "openai": {"store": True},
        "other": {"x": 1},
        "flag": True,
    }
    assert options["openai"] == {"previous_response_id": "resp_1", "store": True}


def test_break_response_chain_is_none_without_a_chain() -> None:
    assert GPT.break_response_chain({"openai": {"store": True}, "flag": True}) is None
    assert GPT.break_response_chain({}) is None


async def test_chain_broken_retry_resends_full_history_without_previous_response_id() -> None:
    calls: list[Call] = []
    disabled: list[bool] = []
    retries: list[ClassifiedError] = []

    async def stream_fn(call: Call) -> AsyncIterator[StreamPart]:
        calls.append(call)
        if len(calls) == 1:
            raise RuntimeError("Previous response with id 'resp_1' not found.")
        return stream_from_parts(
            [
                *text("t", "ok"),
                StreamPart(
                    P.FINISH,
                    finish_reason=FinishReason.STOP,
                    provider_metadata={"openai": {"response_id": "resp_2"}},
                ),
            ]
        )

    steps = Steps()
    await run(
        RunOptions(
            model=GptChained(stream_fn=stream_fn, provider_name="openai"),
            persist_step=steps,
            provider_options={"openai": {"previous_response_id": "resp_1", "store": True}},
            on_retry=lambda _a, _e, classified, _d: retries.append(classified),
            disable_chain_mode=lambda: disabled.append(True),
            clock=ManualClock(),
        )
    )
    [classified] = retries
    assert classified.chain_broken and classified.retryable
    assert calls[0].provider_options["openai"]["previous_response_id"] == "resp_1"
    assert calls[1].provider_options == {"openai": {"store": True}}
    assert disabled == [True]
    assert steps[0].provider_response_id == "resp_2"


async def test_a_callers_previous_response_id_is_sent_on_the_first_step_only(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "tool_calls", "answer")

    async def tool(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("ok")

    await run(
        RunOptions(
            model=gpt(server),
            messages=list(HELLO.prompt),
            tools=[Tool("get_weather", "", tool), Tool("get_time", "", tool)],
            max_steps=3,
            persist_step=Steps(),
            provider_options={"openai": {"previous_response_id": "resp_caller"}},
        )
    )
    first, second = (r.json() for r in server.requests)
    assert first["previous_response_id"] == "resp_caller"
    # The second step chains on the response the first one stored, as the model does.
    assert second["previous_response_id"] == "resp_68b1tools"


# --- web search: OpenAI's built-in tool -------------------------------------------------

WS_RESPONSE = "resp_68b1c0ffee1c81a3a1d9b6f0c2d4e5f60a1b2c3d4e5f6a7b"
WS_ITEM = "ws_68b1c1001f7c81a3b2e4d6f8a0c2e4f6"
WS_ACTION = {
    "type": "search",
    "query": "coder latest release",
    "sources": [
        {"type": "url", "url": "https://github.com/coder/coder/releases"},
        {"type": "url", "url": "https://coder.com/changelog"},
    ],
}


async def test_web_search_streams_as_provider_executed_parts_with_sources_and_goes_back(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_responses", "web_search", "text")
    web_search = ToolDefinition(
        "web_search",
        provider_type="openai.web_search",
        provider_args={"search_context_size": "low"},
    )
    elsewhere = ToolDefinition("web_search", provider_type="anthropic.web_search_20250305")
    model = gpt(server, store=False)
    call = Call(prompt=HELLO.prompt, tools=[web_search, WEATHER, elsewhere])
    parts = await drain(model, call)
    body = server.requests[0].json()
    assert body["tools"] == [
        {"type": "web_search", "search_context_size": "low"},
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER.input_schema,
            "strict": False,
            "description": "Current weather for a city",
        },
    ]
    assert body["include"] == ["reasoning.encrypted_content", "web_search_call.action.sources"]
    result_metadata = {
        "openai": {
            "item_id": WS_ITEM,
            "response_id": WS_RESPONSE,
            "status": "completed",
            "action": WS_ACTION,
        },
        "sources": [
            {"url": "https://github.com/coder/coder/releases", "title": ""},
            {"url": "https://coder.com/changelog", "title": ""},
        ],
    }
    assert parts[:4] == [
        StreamPart(
            P.TOOL_INPUT_START, id=WS_ITEM, tool_call_name="web_search", provider_executed=True
        ),
        StreamPart(P.TOOL_INPUT_END, id=WS_ITEM),
        StreamPart(
            P.TOOL_CALL,
            id=WS_ITEM,
            tool_call_name="web_search",
            tool_call_input='{"query": "coder latest release"}',
            provider_executed=True,
            provider_metadata=meta(WS_ITEM, WS_RESPONSE),
        ),
        StreamPart(
            P.TOOL_RESULT,
            id=WS_ITEM,
            tool_call_name="web_search",
            provider_executed=True,
            provider_metadata=result_metadata,
        ),
    ]
    assert parts[-1].finish_reason == FinishReason.STOP  # the provider ran it: no tool step

    # Without stored responses the next request carries the search as the item it was.
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                ToolCallPart(
                    WS_ITEM,
                    "web_search",
                    parts[2].tool_call_input,
                    provider_executed=True,
                    provider_metadata=parts[2].provider_metadata or {},
                ),
                ToolResultPart(
                    WS_ITEM, "web_search", provider_executed=True, provider_metadata=result_metadata
                ),
                TextPart("It is v2.20.0."),
            ],
        ),
        Message(Role.USER, [TextPart("Thanks")]),
    ]
    await drain(model, Call(prompt=history, tools=[web_search]))
    assert server.requests[1].json()["input"][1:3] == [
        {"type": "web_search_call", "id": WS_ITEM, "status": "completed", "action": WS_ACTION},
        {"role": "assistant", "content": "It is v2.20.0."},
    ]


async def test_another_providers_search_is_not_sent_back(server: ReplayServer) -> None:
    server.enqueue("openai_responses", "text")
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                ToolCallPart("srvtoolu_1", "web_search", "{}", provider_executed=True),
                ToolResultPart(
                    "srvtoolu_1",
                    "web_search",
                    provider_executed=True,
                    provider_metadata={"anthropic": {"content": {}}},
                ),
                TextPart("Found it."),
            ],
        ),
    ]
    tools = [ToolDefinition("web_search", provider_type="anthropic.web_search_20250305")]
    await drain(gpt(server, store=False), Call(prompt=history, tools=tools))
    body = server.requests[0].json()
    assert body["input"][1:] == [{"role": "assistant", "content": "Found it."}]
    assert "tools" not in body and "web_search_call.action.sources" not in body["include"]
