"""Google Gemini (google-genai) against golden wire-format fixtures."""

from __future__ import annotations

import base64
from typing import Any

from chatd.errors import ErrorKind
from chatd.loop import Call, ModelSettings, ToolDefinition
from chatd.providers import ModelConfig, resolve
from chatd.providers.google import GoogleModel
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
from tests.providers.helpers import HELLO, WEATHER, drain, failure
from tests.providers.replay import ReplayServer

P = StreamPartType
SIGNATURE = "CiQBcsjafJ3qZ0dB6T3nSCKKUJ0A3U4V4JtUW3XmTBsB0yE7TkEK"


def camel(value: Any) -> Any:
    """JSON with every key in lowerCamelCase.

    The SDK sends some fields under their proto names (`mime_type`,
    `parameters_json_schema`); Google's JSON parser accepts both spellings.
    """
    if isinstance(value, dict):
        return {_camel_key(k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.title() for word in rest)


WEATHER_DECLARATION = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "parametersJsonSchema": WEATHER.input_schema,
            "description": "Current weather for a city",
        }
    ]
}


def gemini(server: ReplayServer) -> GoogleModel:
    config = ModelConfig("", "", base_url=server.url, api_key="AIza-test")
    model = resolve("google:gemini-2.5-flash", config=config)
    assert isinstance(model, GoogleModel)
    return model


async def test_text_stream_yields_deltas_usage_and_context_window(server: ReplayServer) -> None:
    server.enqueue("google", "text")
    parts = await drain(gemini(server))
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
                input_tokens=1024, output_tokens=7, total_tokens=2055, cache_read_tokens=1024
            ),
            provider_metadata={
                "google": {
                    "response_id": "ZjjSaLfzBYmQ1dkP4sXqoAk",
                    "model_version": "gemini-2.5-flash",
                },
                "context_window": 1_048_576,
            },
        ),
    ]
    [request] = server.requests
    assert request.path == "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers["x-goog-api-key"] == "AIza-test"
    assert request.json()["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]


async def test_thoughts_stream_as_reasoning_and_keep_the_thought_signature(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "thinking")
    parts = await drain(gemini(server))
    assert parts[:-1] == [
        StreamPart(P.REASONING_START, id="reasoning-0"),
        StreamPart(P.REASONING_DELTA, id="reasoning-0", delta="**Greeting**\nThe user says hello."),
        StreamPart(P.REASONING_DELTA, id="reasoning-0", delta=" A short reply fits."),
        StreamPart(P.REASONING_END, id="reasoning-0"),
        StreamPart(P.TEXT_START, id="text-1"),
        StreamPart(P.TEXT_DELTA, id="text-1", delta="Hi there!"),
        StreamPart(
            P.TEXT_END, id="text-1", provider_metadata={"google": {"thought_signature": SIGNATURE}}
        ),
    ]
    assert parts[-1].usage == Usage(
        input_tokens=8, output_tokens=39, total_tokens=47, reasoning_tokens=36
    )


async def test_parallel_function_calls_stream_whole_and_finish_as_tool_calls(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "tool_calls")
    call = Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="required")
    parts = await drain(gemini(server), call)
    generated = parts[7].id
    assert generated.startswith("call-")
    assert parts[:-1] == [
        StreamPart(P.TEXT_START, id="text-0"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta="Checking both."),
        StreamPart(P.TEXT_END, id="text-0"),
        StreamPart(P.TOOL_INPUT_START, id="fc-7f3a", tool_call_name="get_weather"),
        StreamPart(P.TOOL_INPUT_DELTA, id="fc-7f3a", delta='{"location": "Paris"}'),
        StreamPart(P.TOOL_INPUT_END, id="fc-7f3a"),
        StreamPart(
            P.TOOL_CALL,
            id="fc-7f3a",
            tool_call_name="get_weather",
            tool_call_input='{"location": "Paris"}',
            provider_metadata={"google": {"id": "fc-7f3a", "thought_signature": "CiQBsigA"}},
        ),
        StreamPart(P.TOOL_INPUT_START, id=generated, tool_call_name="get_time"),
        StreamPart(P.TOOL_INPUT_DELTA, id=generated, delta="{}"),
        StreamPart(P.TOOL_INPUT_END, id=generated),
        StreamPart(P.TOOL_CALL, id=generated, tool_call_name="get_time", tool_call_input="{}"),
    ]
    assert parts[-1].finish_reason == FinishReason.TOOL_CALLS
    body = server.requests[0].json()
    assert camel(body["tools"]) == [WEATHER_DECLARATION]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_history_converts_to_contents_with_function_responses_and_signatures(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "answer")
    signed = {"google": {"thought_signature": "CiQBsigA"}}
    prompt = [
        Message(Role.SYSTEM, [TextPart("Be brief.")]),
        Message(Role.USER, [TextPart("What is this?"), FilePart(b"PNG", "image/png")]),
        Message(
            Role.ASSISTANT,
            [
                ReasoningPart("Think.", signed),
                ToolCallPart(
                    "fc-7f3a",
                    "get_weather",
                    '{"location":"Paris"}',
                    provider_metadata={"google": {"id": "fc-7f3a"}},
                ),
                ToolCallPart("call-1", "screenshot", "{}"),
                ToolCallPart("call-2", "get_time", "{}"),
            ],
        ),
        Message(
            Role.TOOL,
            [
                ToolResultPart("fc-7f3a", "get_weather", ToolResultText("sunny")),
                ToolResultPart("call-1", "screenshot", ToolResultMedia("UE5H", "image/png")),
                ToolResultPart("call-2", "get_time", ToolResultError("clock broken")),
            ],
        ),
    ]
    settings = ModelSettings(max_output_tokens=50, top_k=20)
    await drain(gemini(server), Call(prompt=prompt, settings=settings))
    body = server.requests[0].json()
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}], "role": "user"}
    assert body["generationConfig"] == {"maxOutputTokens": 50, "topK": 20}
    png = base64.b64encode(b"PNG").decode()
    assert camel(body["contents"]) == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": png}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Think.", "thought": True, "thoughtSignature": "CiQBsigA"},
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"location": "Paris"},
                        "id": "fc-7f3a",
                    }
                },
                {"functionCall": {"name": "screenshot", "args": {}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "sunny"},
                        "id": "fc-7f3a",
                    }
                },
                {
                    "functionResponse": {
                        "name": "screenshot",
                        "response": {"output": "[image/png attached]"},
                    }
                },
                {"inlineData": {"mimeType": "image/png", "data": "UE5H"}},
                {"functionResponse": {"name": "get_time", "response": {"error": "clock broken"}}},
            ],
        },
    ]


async def test_safety_finish_is_content_filter(server: ReplayServer) -> None:
    server.enqueue("google", "safety")
    parts = await drain(gemini(server))
    assert parts[-1].finish_reason == FinishReason.CONTENT_FILTER


async def test_401_is_auth_with_status_kept(server: ReplayServer) -> None:
    server.enqueue("google", "401")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.AUTH,
        401,
        False,
    )
    assert (
        classified.message
        == "Authentication with Google failed. Check the API key and permissions."
    )


async def test_invalid_api_key_400_is_auth_with_its_400_kept(server: ReplayServer) -> None:
    server.enqueue("google", "400_api_key_invalid")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.AUTH,
        400,
        False,
    )


async def test_429_is_rate_limit_with_the_retry_info_delay(server: ReplayServer) -> None:
    server.enqueue("google", "429")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.RATE_LIMIT,
        429,
        True,
    )
    assert classified.retry_after == 7.0
    assert len(server.requests) == 1


async def test_500_is_a_retryable_generic_error(server: ReplayServer) -> None:
    server.enqueue("google", "500")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.GENERIC,
        500,
        True,
    )


async def test_503_model_overloaded_is_overloaded(server: ReplayServer) -> None:
    server.enqueue("google", "503")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        503,
        True,
    )


async def test_error_mid_stream_is_classified_after_the_parts_so_far(server: ReplayServer) -> None:
    server.enqueue("google", "error_mid_stream")
    classified, parts = await failure(gemini(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.status_code, classified.retryable) == (
        ErrorKind.OVERLOADED,
        503,
        True,
    )


async def test_disconnect_mid_stream_is_a_retryable_timeout(server: ReplayServer) -> None:
    server.enqueue("google", "disconnect")
    classified, parts = await failure(gemini(server))
    assert [p.type for p in parts] == [P.TEXT_START, P.TEXT_DELTA]
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "Google is temporarily unavailable."


async def test_stream_ending_without_a_finish_reason_is_a_retryable_truncation(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "truncated")
    classified, _ = await failure(gemini(server))
    assert (classified.kind, classified.retryable) == (ErrorKind.TIMEOUT, True)
    assert classified.message == "Google stream closed unexpectedly before the response completed."


async def test_missing_key_fails_before_any_request(server: ReplayServer) -> None:
    model = resolve("google:gemini-2.5-flash", config=ModelConfig("", "", base_url=server.url))
    classified, _ = await failure(model)
    assert classified.kind == ErrorKind.MISSING_KEY
    assert "GEMINI_API_KEY or GOOGLE_API_KEY" in classified.detail
    assert server.requests == []


async def test_tool_choice_none_still_offers_the_tools(server: ReplayServer) -> None:
    server.enqueue("google", "answer")
    await drain(gemini(server), Call(prompt=HELLO.prompt, tools=[WEATHER], tool_choice="none"))
    body = server.requests[0].json()
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert len(body["tools"]) == 1


async def test_search_grounding_streams_as_a_provider_executed_search_with_its_sources(
    server: ReplayServer,
) -> None:
    server.enqueue("google", "grounding", "text")
    model = gemini(server)
    search = ToolDefinition("web_search", provider_type="google.google_search")
    elsewhere = ToolDefinition("web_search", provider_type="openai.web_search")
    parts = await drain(model, Call(prompt=HELLO.prompt, tools=[WEATHER, search, elsewhere]))
    body = server.requests[0].json()
    # The SDK orders the tools its own way; Gemini reads them as a set.
    assert sorted(camel(body["tools"]), key=lambda tool: next(iter(tool))) == [
        WEATHER_DECLARATION,
        {"googleSearch": {}},
    ]
    call_id = "search-aK3Sa5fVKc2m1dkPlOWL-Ak"
    result = parts[-2]
    assert parts[:-1] == [
        StreamPart(P.TEXT_START, id="text-0"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta="Coder's latest release is"),
        StreamPart(P.TEXT_DELTA, id="text-0", delta=" v2.20.0."),
        StreamPart(P.TEXT_END, id="text-0"),
        StreamPart(
            P.TOOL_CALL,
            id=call_id,
            tool_call_name="web_search",
            tool_call_input='{"queries": ["coder latest release"]}',
            provider_executed=True,
        ),
        StreamPart(
            P.TOOL_RESULT,
            id=call_id,
            tool_call_name="web_search",
            provider_executed=True,
            provider_metadata=result.provider_metadata,
        ),
    ]
    assert result.provider_metadata is not None
    assert result.provider_metadata["sources"] == [
        {
            "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQGx1",
            "title": "github.com",
        },
        {
            "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQHk2",
            "title": "coder.com",
        },
    ]
    grounding = result.provider_metadata["google"]["grounding_metadata"]
    assert grounding["web_search_queries"] == ["coder latest release"]
    # A search is not a function call: the step ends, no local tool runs.
    assert parts[-1].finish_reason == FinishReason.STOP

    # Grounding cannot go back to Gemini: the next request has the text only.
    history = [
        *HELLO.prompt,
        Message(
            Role.ASSISTANT,
            [
                TextPart("Coder's latest release is v2.20.0."),
                ToolCallPart(call_id, "web_search", "{}", provider_executed=True),
                ToolResultPart(
                    call_id,
                    "web_search",
                    provider_executed=True,
                    provider_metadata=result.provider_metadata,
                ),
            ],
        ),
    ]
    await drain(model, Call(prompt=history, tools=[elsewhere]))
    body = server.requests[1].json()
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Coder's latest release is v2.20.0."}],
    }
    assert "tools" not in body and "toolConfig" not in body
