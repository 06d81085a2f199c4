"""OpenAI Chat Completions (and compatible servers) against golden wire-format fixtures."""

from __future__ import annotations

import pytest

from chatd.errors import ErrorKind
from chatd.loop import Call, ModelSettings, ToolDefinition
from chatd.providers import ModelConfig, resolve
from chatd.providers.openai_chat import OpenAIChatModel
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
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
from tests.providers.helpers import HELLO, WEATHER, drain, failure
from tests.providers.replay import ReplayServer

P = StreamPartType


def openai_chat(server: ReplayServer, spec: str = "openai-chat:gpt-4o") -> OpenAIChatModel:
    model = resolve(
        spec, config=ModelConfig("", "", base_url=f"{server.url}/v1", api_key="sk-test")
    )
    assert isinstance(model, OpenAIChatModel)
    return model


async def test_text_stream_yields_deltas_usage_and_context_window(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "text")
    parts = await drain(openai_chat(server))
    assert parts == [
        StreamPart(P.TEXT_START, id="text"),
        StreamPart(P.TEXT_DELTA, id="text", delta="Hello"),
        StreamPart(P.TEXT_DELTA, id="text", delta="!"),
        StreamPart(P.TEXT_DELTA, id="text", delta=" How can I"),
        StreamPart(P.TEXT_DELTA, id="text", delta=" help?"),
        StreamPart(P.TEXT_END, id="text"),
        StreamPart(
            P.FINISH,
            finish_reason=FinishReason.STOP,
            usage=Usage(
                input_tokens=176, output_tokens=6, total_tokens=1206, cache_read_tokens=1024
            ),
            provider_metadata={
                "openai": {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"},
                "context_window": 128_000,
            },
        ),
    ]
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Hello"}]


async def test_reasoning_content_of_compatible_servers_streams_as_reasoning(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "reasoning")
    model = resolve(
        "ollama:deepseek-r1:8b", config=ModelConfig("", "", base_url=f"{server.url}/v1")
    )
    assert model.provider == "openai-compat"
    parts = await drain(model)
    assert [(p.type, p.delta) for p in parts[:-1]] == [
        (P.REASONING_START, ""),
        (P.REASONING_DELTA, "The user"),
        (P.REASONING_DELTA, " greets me."),
        (P.REASONING_END, ""),
        (P.TEXT_START, ""),
        (P.TEXT_DELTA, "Hi"),
        (P.TEXT_DELTA, "!"),
        (P.TEXT_END, ""),
    ]
    assert parts[-1].usage == Usage(
        input_tokens=9, output_tokens=12, total_tokens=21, reasoning_tokens=8
    )
    assert parts[-1].provider_metadata == {"openai": {"id": "chatcmpl-412"}}  # window unknown
    # No key configured, none needed: the SDK still sends a placeholder bearer.
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_parallel_tool_calls_stream_incremental_input_then_full_calls(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "tool_calls")
    call = Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="required")
    parts = await drain(openai_chat(server), call)
    first, second = "call_FthC9qRpsL5kBpwwyw6c7j4k", "call_uXIvZJz7fBxhgWfE4uZNwPmz"
    assert parts[:-1] == [
        StreamPart(P.TOOL_INPUT_START, id=first, tool_call_name="get_weather"),
        StreamPart(P.TOOL_INPUT_DELTA, id=first, delta='{"lo'),
        StreamPart(P.TOOL_INPUT_DELTA, id=first, delta='cation": "Paris"}'),
        StreamPart(P.TOOL_INPUT_START, id=second, tool_call_name="get_time"),
        StreamPart(P.TOOL_INPUT_DELTA, id=second, delta='{"tz": '),
        StreamPart(P.TOOL_INPUT_DELTA, id=second, delta='"Europe/Paris"}'),
        StreamPart(P.TOOL_INPUT_END, id=first),
        StreamPart(
            P.TOOL_CALL,
            id=first,
            tool_call_name="get_weather",
            tool_call_input='{"location": "Paris"}',
        ),
        StreamPart(P.TOOL_INPUT_END, id=second),
        StreamPart(
            P.TOOL_CALL,
            id=second,
            tool_call_name="get_time",
            tool_call_input='{"tz": "Europe/Paris"}',
        ),
    ]
    assert parts[-1].finish_reason == FinishReason.TOOL_CALLS
    body = server.requests[0].json()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": WEATHER.input_schema,
            },
        }
    ]
    assert body["tool_choice"] == "required"


async def test_history_with_tool_results_errors_and_images_converts_to_chat_messages(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "text")
    prompt = [
        Message(Role.SYSTEM, [TextPart("Be brief.")]),
        Message(Role.USER, [TextPart("What is this?"), FilePart(b"PNG", "image/png")]),
        Message(
            Role.ASSISTANT,
            [
                TextPart("Checking."),
                ToolCallPart("call_1", "get_weather", '{"location":"Paris"}'),
                ToolCallPart("call_2", "screenshot", "{}"),
                ToolCallPart("call_3", "get_time", "{}"),
            ],
        ),
        Message(
            Role.TOOL,
            [
                ToolResultPart("call_1", "get_weather", ToolResultText("sunny")),
                ToolResultPart("call_2", "screenshot", ToolResultMedia("UE5H", "image/png")),
                ToolResultPart("call_3", "get_time", ToolResultError("clock broken")),
            ],
        ),
    ]
    settings = ModelSettings(max_output_tokens=64, temperature=0.2)
    await drain(openai_chat(server), Call(prompt=prompt, settings=settings))
    body = server.requests[0].json()
    assert body["max_completion_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,UE5H"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "screenshot", "arguments": "{}"},
                },
                {
                    "id": "call_3",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "[image/png attached]"},
        {"role": "tool", "tool_call_id": "call_3", "content": "clock broken"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Tool output:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,UE5H"}},
            ],
        },
    ]


async def test_401_is_auth_with_status_kept(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "401")
    classified, parts = await failure(openai_chat(server))
    assert parts == []
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.AUTH,
        401,
        False,
    )
    assert classified.provider == "openai"
    assert classified.message == (
        "Authentication with OpenAI failed. Check the API key and permissions."
    )
    assert "Incorrect API key provided" in classified.detail


async def test_429_is_rate_limit_with_retry_after(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "429")
    classified, _ = await failure(openai_chat(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.RATE_LIMIT,
        429,
        True,
    )
    assert classified.retry_after == 7.0
    assert len(server.requests) == 1  # the SDK's own retries are off: the loop retries


async def test_500_is_a_retryable_generic_error(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "500")
    classified, _ = await failure(openai_chat(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.GENERIC,
        500,
        True,
    )


async def test_error_event_mid_stream_is_classified_after_the_parts_so_far(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "error_mid_stream")
    classified, parts = await failure(openai_chat(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.GENERIC, True)
    assert classified.provider == "openai"


async def test_disconnect_mid_stream_is_a_retryable_timeout(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "disconnect")
    classified, parts = await failure(openai_chat(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "OpenAI is temporarily unavailable."


async def test_missing_key_fails_before_any_request(server: ReplayServer) -> None:
    model = resolve("openai-chat:gpt-4o", config=ModelConfig("", "", base_url=server.url))
    classified, _ = await failure(model)
    assert classified.kind == ErrorKind.MISSING_KEY
    assert classified.message == (
        "This conversation was started with an API key that is no longer available. "
        "Send your message again to continue."
    )
    assert "OPENAI_API_KEY" in classified.detail
    assert server.requests == []


async def test_key_is_read_from_the_configured_environment_variable(
    server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_ROUTER_KEY", "sk-or-1")
    server.enqueue("openai_chat", "text")
    config = ModelConfig("", "", base_url=f"{server.url}/v1", api_key_env="MY_ROUTER_KEY")
    model = resolve("openrouter:openai/gpt-4o", config=config)
    parts = await drain(model)
    assert server.requests[0].headers["authorization"] == "Bearer sk-or-1"
    assert model.provider == "openrouter"
    assert parts[-1].provider_metadata is not None
    assert parts[-1].provider_metadata["context_window"] == 128_000


async def test_stream_ending_without_a_finish_reason_is_a_retryable_truncation(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "truncated")
    classified, parts = await failure(openai_chat(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "OpenAI stream closed unexpectedly before the response completed."


async def test_tool_choice_none_is_sent_and_compat_servers_get_max_tokens(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "text")
    model = resolve("vllm:qwen3", config=ModelConfig("", "", base_url=f"{server.url}/v1"))
    settings = ModelSettings(max_output_tokens=32, top_k=5)
    await drain(
        model, Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="none", settings=settings)
    )
    body = server.requests[0].json()
    assert (len(body["tools"]), body["tool_choice"]) == (1, "none")
    assert (body["max_tokens"], body["top_k"]) == (32, 5)


async def test_aclose_releases_the_client_and_the_next_call_makes_a_new_one(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "text", "text")
    model = openai_chat(server)
    await drain(model)
    first = model.client()
    await model.aclose()
    await drain(model)
    assert model.client() is not first
    await model.aclose()


async def test_refusal_streams_as_text_and_finishes_content_filtered(server: ReplayServer) -> None:
    server.enqueue("openai_chat", "refusal")
    parts = await drain(openai_chat(server))
    assert [(p.type, p.delta) for p in parts[:-1]] == [
        (P.TEXT_START, ""),
        (P.TEXT_DELTA, "I can't help with that."),
        (P.TEXT_END, ""),
    ]
    assert parts[-1].finish_reason == FinishReason.CONTENT_FILTER


async def test_529_from_a_compatible_gateway_is_overloaded_with_retry_after(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "529")
    model = resolve(
        "openai-compat:llama-3.3-70b", config=ModelConfig("", "", base_url=f"{server.url}/v1")
    )
    classified, _ = await failure(model)
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        529,
        True,
    )
    assert classified.retry_after == 3.0
    assert classified.message == "OpenAI Compatible is temporarily overloaded."


async def test_context_limit_in_the_config_overrides_the_known_window(
    server: ReplayServer,
) -> None:
    server.enqueue("openai_chat", "text")
    config = ModelConfig("", "", base_url=f"{server.url}/v1", api_key="k", context_limit=32_768)
    parts = await drain(resolve("openai-chat:gpt-4o", config=config))
    assert parts[-1].provider_metadata is not None
    assert parts[-1].provider_metadata["context_window"] == 32_768


async def test_provider_defined_tools_and_provider_executed_history_are_left_out(
    server: ReplayServer,
) -> None:
    # Chat Completions has no web search tool: an offer of one sends no definition,
    # and another provider's executed search in history goes back as its text only.
    server.enqueue("openai_chat", "text", "text")
    searches = [
        ToolDefinition("web_search", provider_type="openai.web_search"),
        ToolDefinition("web_search", provider_type="anthropic.web_search_20250305"),
    ]
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                ToolCallPart("srvtoolu_1", "web_search", "{}", provider_executed=True),
                ToolResultPart("srvtoolu_1", "web_search", provider_executed=True),
                TextPart("Found it."),
            ],
        ),
        Message(Role.USER, [TextPart("Thanks")]),
    ]
    model = openai_chat(server)
    await drain(model, Call(prompt=history, tools=searches))
    await drain(model, Call(prompt=HELLO.prompt, tools=[*searches, WEATHER]))
    first, second = (r.json() for r in server.requests)
    assert "tools" not in first and "tool_choice" not in first
    assert first["messages"][1:] == [
        {"role": "assistant", "content": "Found it."},
        {"role": "user", "content": "Thanks"},
    ]
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather"]
