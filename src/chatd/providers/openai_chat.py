"""OpenAI Chat Completions over the official `openai` SDK, and every OpenAI-compatible server.

Turns a streamed `chat.completions.create` into chatd `StreamPart`s: text,
reasoning (`reasoning_content` / `reasoning` deltas, as DeepSeek, vLLM, Ollama and
OpenRouter send them), tool calls with incremental arguments, usage and the finish
reason. Provider-defined tools (web search) cannot be expressed here and are not
sent, nor is another provider's executed call or result in history. With
`base_url` it talks to Ollama, vLLM, LM Studio, llama.cpp's server or OpenRouter.
SDK exceptions become classified errors in `_map_errors()` only; the SDK's own
retries are off, because the loop owns retrying.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from chatd.protocols import Call, ToolDefinition
from chatd.providers._common import (
    SDKModel,
    classified,
    data_url,
    file_text,
    finish_metadata,
    result_text,
    transport_failure,
    truncated_stream,
)
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultMedia,
    ToolResultPart,
    Usage,
)

__all__ = ["OpenAIChatModel", "stream_error_status", "to_chat_messages"]

P = StreamPartType

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class OpenAIChatModel(SDKModel[AsyncOpenAI]):
    """A Chat Completions model: OpenAI itself, or any server speaking its protocol."""

    key_envs = ("OPENAI_API_KEY",)

    def _make_client(self, api_key: str) -> AsyncOpenAI:
        return AsyncOpenAI(
            api_key=api_key,
            base_url=self.config.base_url or None,
            max_retries=0,
            timeout=self.config.timeout,
            default_headers=dict(self.config.headers) or None,
        )

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        client = self.client()
        request = self.request(call)
        with _map_errors(self.provider):
            response = await client.chat.completions.create(**request)
        return self._parts(cast("AsyncStream[ChatCompletionChunk]", response))

    def request(self, call: Call) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for `call`."""
        settings = call.settings
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": to_chat_messages(call.prompt),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # Chat Completions has no provider-defined tools (web search): they are left out.
        tools = [_tool(t) for t in call.tools if not t.provider_type]
        if tools:
            # Offered even with choice "none": history holding tool calls needs them.
            request["tools"] = tools
            request["tool_choice"] = _tool_choice(call.tool_choice)
        if settings.max_output_tokens is not None:
            # OpenAI itself wants the newer name; compatible servers know the older one.
            key = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
            request[key] = settings.max_output_tokens
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            value = getattr(settings, name)
            if value is not None:
                request[name] = value
        extra = self.extra_body(call, "openai")
        if settings.top_k is not None and self.provider != "openai":
            extra.setdefault("top_k", settings.top_k)  # vLLM, Ollama, llama.cpp accept it
        if extra:
            request["extra_body"] = extra
        return request

    async def _parts(self, response: AsyncStream[ChatCompletionChunk]) -> AsyncIterator[StreamPart]:
        translator = _ChunkTranslator()
        try:
            with _map_errors(self.provider):
                async for chunk in response:
                    for part in translator.feed(chunk):
                        yield part
            if translator.finish_reason is None:
                raise truncated_stream(
                    self.provider, "openai chat stream closed before its finish reason"
                )
            for part in translator.close():
                yield part
            yield StreamPart(
                P.FINISH,
                finish_reason=translator.finish_reason,
                usage=translator.usage,
                provider_metadata=finish_metadata(self.config, "openai", id=translator.response_id),
            )
        finally:
            await response.close()


class _OpenCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []


class _ChunkTranslator:
    """Chat completion chunks in, stream parts out; one per streamed response."""

    def __init__(self) -> None:
        self.response_id = ""
        self.finish_reason: FinishReason | None = None
        self.usage = Usage()
        self._text_open = False
        self._reasoning_open = False
        self._refused = False
        self._calls: dict[int, _OpenCall] = {}

    def feed(self, chunk: ChatCompletionChunk) -> list[StreamPart]:
        parts: list[StreamPart] = []
        self.response_id = self.response_id or chunk.id
        if chunk.usage is not None:
            self.usage = _usage(chunk.usage)
        for choice in chunk.choices[:1]:
            delta = choice.delta
            reasoning = _reasoning_delta(delta)
            if reasoning:
                if not self._reasoning_open:
                    self._reasoning_open = True
                    parts.append(StreamPart(P.REASONING_START, id="reasoning"))
                parts.append(StreamPart(P.REASONING_DELTA, id="reasoning", delta=reasoning))
            # A refusal is shown like text, and the step ends as content-filtered.
            text = delta.content or delta.refusal
            if text:
                self._refused = self._refused or bool(delta.refusal)
                parts += self._close_reasoning()
                if not self._text_open:
                    self._text_open = True
                    parts.append(StreamPart(P.TEXT_START, id="text"))
                parts.append(StreamPart(P.TEXT_DELTA, id="text", delta=text))
            for tool_call in delta.tool_calls or ():
                parts += self._close_reasoning()
                parts += self._tool_call_delta(tool_call)
            if choice.finish_reason is not None:
                self.finish_reason = _FINISH_REASONS.get(choice.finish_reason, FinishReason.OTHER)
        return parts

    def _tool_call_delta(self, tool_call: Any) -> list[StreamPart]:
        parts: list[StreamPart] = []
        function = tool_call.function
        open_call = self._calls.get(tool_call.index)
        if open_call is None:
            call_id = tool_call.id or f"call_{tool_call.index}"
            name = (function.name if function else None) or ""
            open_call = self._calls[tool_call.index] = _OpenCall(call_id, name)
            parts.append(StreamPart(P.TOOL_INPUT_START, id=call_id, tool_call_name=name))
        if function is not None and function.arguments:
            open_call.arguments.append(function.arguments)
            parts.append(StreamPart(P.TOOL_INPUT_DELTA, id=open_call.id, delta=function.arguments))
        return parts

    def _close_reasoning(self) -> list[StreamPart]:
        if not self._reasoning_open:
            return []
        self._reasoning_open = False
        return [StreamPart(P.REASONING_END, id="reasoning")]

    def close(self) -> list[StreamPart]:
        """Close every open block, then emit each tool call with its full input."""
        parts = self._close_reasoning()
        if self._text_open:
            self._text_open = False
            parts.append(StreamPart(P.TEXT_END, id="text"))
        for index in sorted(self._calls):
            call = self._calls[index]
            arguments = "".join(call.arguments) or "{}"
            parts.append(StreamPart(P.TOOL_INPUT_END, id=call.id))
            parts.append(
                StreamPart(
                    P.TOOL_CALL, id=call.id, tool_call_name=call.name, tool_call_input=arguments
                )
            )
        self._calls.clear()
        if self._refused:
            self.finish_reason = FinishReason.CONTENT_FILTER
        elif self.finish_reason == FinishReason.STOP and any(p.type == P.TOOL_CALL for p in parts):
            # Some compatible servers say "stop" even when the answer is tool calls.
            self.finish_reason = FinishReason.TOOL_CALLS
        return parts


def _reasoning_delta(delta: Any) -> str:
    extra = delta.model_extra or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(usage: Any) -> Usage:
    cached = getattr(usage.prompt_tokens_details, "cached_tokens", None) or 0
    reasoning = getattr(usage.completion_tokens_details, "reasoning_tokens", None) or 0
    prompt = usage.prompt_tokens or 0
    output = usage.completion_tokens or 0
    # OpenAI counts cached tokens inside prompt_tokens; chatd keeps them apart so
    # input + cache reads is the prompt's size, as with Anthropic.
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=output,
        total_tokens=usage.total_tokens or prompt + output,
        reasoning_tokens=reasoning,
        cache_read_tokens=cached,
    )


# --- prompt conversion ------------------------------------------------------------------


def to_chat_messages(prompt: list[Message]) -> list[dict[str, Any]]:
    """chatd messages → Chat Completions messages (tool results one message per call)."""
    out: list[dict[str, Any]] = []
    for message in prompt:
        if message.role == Role.SYSTEM:
            text = "\n\n".join(p.text for p in message.content if isinstance(p, TextPart))
            out.append({"role": "system", "content": text})
        elif message.role == Role.USER:
            out.append({"role": "user", "content": _user_content(message)})
        elif message.role == Role.ASSISTANT:
            out.append(_assistant_message(message))
        else:
            out += _tool_messages(message)
    return out


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, FilePart):
            text = file_text(part)
            if text is not None:
                parts.append({"type": "text", "text": text})
            else:
                parts.append(_file_part(part.media_type, part.data, part.filename))
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _file_part(media_type: str, data: bytes | str, filename: str = "") -> dict[str, Any]:
    url = data_url(media_type, data)
    if media_type.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"filename": filename or "attachment", "file_data": url}}


def _assistant_message(message: Message) -> dict[str, Any]:
    text = "".join(p.text for p in message.content if isinstance(p, TextPart))
    calls = [
        {
            "id": p.tool_call_id,
            "type": "function",
            "function": {"name": p.tool_name, "arguments": p.input or "{}"},
        }
        for p in message.content
        if isinstance(p, ToolCallPart) and not p.provider_executed
    ]
    out: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_messages(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    for part in message.content:
        if not isinstance(part, ToolResultPart):
            continue
        out.append(
            {"role": "tool", "tool_call_id": part.tool_call_id, "content": result_text(part.output)}
        )
        if isinstance(part.output, ToolResultMedia):
            media.append(_file_part(part.output.media_type, part.output.data))
    if media:
        # Tool messages carry text only: images follow as a user message.
        out.append({"role": "user", "content": [{"type": "text", "text": "Tool output:"}, *media]})
    return out


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


# --- errors -----------------------------------------------------------------------------


@contextlib.contextmanager
def _map_errors(provider: str) -> Iterator[None]:
    """The SDK's exceptions → classified errors carrying the HTTP status; nothing else."""
    try:
        yield
    except openai.APIStatusError as err:
        raise classified(err, provider, status_code=err.status_code) from err
    except openai.APITimeoutError as err:
        raise classified(err, provider) from err
    except openai.APIConnectionError as err:
        raise transport_failure(err, provider) from err
    except openai.APIError as err:  # an error event inside a 200 stream
        raise classified(err, provider, status_code=stream_error_status(err.body)) from err


# An error sent inside a 200 stream has no HTTP status; its type says which it would be.
_STREAM_ERROR_STATUS = {
    "server_error": 500,
    "rate_limit_exceeded": 429,
    "invalid_api_key": 401,
    "overloaded": 529,
    "service_unavailable": 503,
}


def stream_error_status(body: object) -> int:
    """The HTTP status an in-stream error (`{"type", "code", …}`) stands for, or 0."""
    if not isinstance(body, dict):
        return 0
    for key in ("code", "type"):
        status = _STREAM_ERROR_STATUS.get(str(body.get(key)))
        if status:
            return status
    return 0
