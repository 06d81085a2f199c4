"""Anthropic Messages over the official `anthropic` SDK.

Turns a streamed `messages.create` into chatd `StreamPart`s: text, thinking (its
signature kept in provider metadata so it can be sent back), redacted thinking,
tool_use with `input_json_delta` fragments, server tools (web search) as
provider-executed calls and results, usage with cache reads and writes, and stop
reasons. Anthropic's quirks meet the loop through the model's hooks: every prompt
gets cache breakpoints (`cache_control`) and loses server tool uses without their
result, which Anthropic rejects (the turns around a message left empty merge); no
step keeps such a call. Provider-defined tools (web search, computer use) go out in
Anthropic's own tool shape. SDK exceptions, including 529 overloaded and errors
sent inside the stream, become classified errors in `_map_errors()` only; the
SDK's own retries are off.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import anthropic
import httpx2
import msgspec
from anthropic import AsyncAnthropic, AsyncStream
from anthropic.types import RawMessageStreamEvent

from chatd.protocols import Call, ToolDefinition
from chatd.providers._common import (
    SDKModel,
    classified,
    file_text,
    finish_metadata,
    parse_tool_input,
    result_text,
    transport_failure,
    truncated_stream,
)
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

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicModel", "to_anthropic_messages"]

P = StreamPartType
_KEY = "anthropic"
_CACHE_MARK = {_KEY: {"cache_control": {"type": "ephemeral"}}}

# Anthropic requires max_tokens on every request; 4096 is within every Claude
# model's output limit. Set ModelSettings.max_output_tokens for longer answers.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.OTHER,
}

# Errors sent inside a 200 stream carry a type, not a status: the status they mean.
_ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicModel(SDKModel[AsyncAnthropic]):
    key_envs = ("ANTHROPIC_API_KEY",)

    def _make_client(self, api_key: str) -> AsyncAnthropic:
        return AsyncAnthropic(
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
            response = await client.messages.create(**request)
        return self._parts(cast("AsyncStream[RawMessageStreamEvent]", response))

    def prepare_prompt(self, messages: list[Message]) -> list[Message]:
        """Model hook: the prompt without unpaired server tool parts, with cache breakpoints."""
        return _add_prompt_caching(_sanitize_history(messages))

    def persistable_content(self, content: list[MessagePart]) -> list[MessagePart]:
        """Model hook: a step keeps no server tool call without its result (nor the reverse)."""
        return _drop_unpaired_provider_calls(content)

    def request(self, call: Call) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `call`."""
        settings = call.settings
        system, messages = to_anthropic_messages(call.prompt)
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": settings.max_output_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system:
            request["system"] = system
        tools = [definition for t in call.tools if (definition := _tool(t)) is not None]
        if tools:
            # Offered even with choice "none": history holding tool calls needs them.
            request["tools"] = tools
            request["tool_choice"] = _tool_choice(call.tool_choice)
        for name in ("temperature", "top_p", "top_k"):
            value = getattr(settings, name)
            if value is not None:
                request[name] = value
        extra = self.extra_body(call, _KEY)
        if extra:
            request["extra_body"] = extra
        return request

    async def _parts(
        self, response: AsyncStream[RawMessageStreamEvent]
    ) -> AsyncIterator[StreamPart]:
        translator = _EventTranslator()
        try:
            with _map_errors(self.provider):
                async for event in response:
                    for part in translator.feed(event):
                        yield part
            if not translator.stopped:
                raise truncated_stream(self.provider, "anthropic stream closed before message_stop")
            yield StreamPart(
                P.FINISH,
                finish_reason=translator.finish_reason,
                usage=translator.usage(),
                provider_metadata=finish_metadata(
                    self.config,
                    _KEY,
                    id=translator.message_id,
                    stop_reason=translator.stop_reason,
                ),
            )
        finally:
            await response.close()


class _Block:
    __slots__ = ("chunks", "id", "kind", "name", "signature")

    def __init__(self, kind: str, block_id: str, name: str = "") -> None:
        self.kind = kind
        self.id = block_id
        self.name = name
        self.chunks: list[str] = []
        self.signature = ""


class _EventTranslator:
    """Raw message stream events in, stream parts out; one per streamed message."""

    def __init__(self) -> None:
        self.message_id = ""
        self.stop_reason = ""
        self.finish_reason = FinishReason.UNKNOWN
        self.stopped = False
        self._blocks: dict[int, _Block] = {}
        self._usage: dict[str, int] = {}

    def usage(self) -> Usage:
        u = self._usage
        input_tokens = u.get("input_tokens", 0)
        output = u.get("output_tokens", 0)
        cache_read = u.get("cache_read_input_tokens", 0)
        cache_write = u.get("cache_creation_input_tokens", 0)
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output,
            total_tokens=input_tokens + cache_read + cache_write + output,
            reasoning_tokens=u.get("thinking_tokens", 0),
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_write,
        )

    def _record_usage(self, usage: Any) -> None:
        # message_start carries the input side; message_delta's counts are cumulative.
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = getattr(usage, key, None)
            if isinstance(value, int):
                self._usage[key] = value
        details = getattr(usage, "output_tokens_details", None)
        thinking = getattr(details, "thinking_tokens", None)
        if isinstance(thinking, int):
            self._usage["thinking_tokens"] = thinking

    def feed(self, event: Any) -> list[StreamPart]:
        kind = event.type
        if kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        if kind == "content_block_start":
            return self._start(event.index, event.content_block)
        if kind == "content_block_stop":
            return self._stop(event.index)
        if kind == "message_start":
            self.message_id = event.message.id
            self._record_usage(event.message.usage)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or ""
            self.finish_reason = _STOP_REASONS.get(self.stop_reason, FinishReason.OTHER)
            self._record_usage(event.usage)
        elif kind == "message_stop":
            self.stopped = True
        return []

    def _start(self, index: int, block: Any) -> list[StreamPart]:
        kind = block.type
        if kind == "text":
            self._blocks[index] = _Block("text", f"text-{index}")
            parts = [StreamPart(P.TEXT_START, id=f"text-{index}")]
            if block.text:
                parts += self._delta(index, _TextDelta(block.text))
            return parts
        if kind == "thinking":
            self._blocks[index] = _Block("thinking", f"reasoning-{index}")
            return [StreamPart(P.REASONING_START, id=f"reasoning-{index}")]
        if kind == "redacted_thinking":
            block_id = f"reasoning-{index}"
            metadata = {_KEY: {"redacted_data": block.data}}
            return [
                StreamPart(P.REASONING_START, id=block_id),
                StreamPart(P.REASONING_END, id=block_id, provider_metadata=metadata),
            ]
        if kind in ("tool_use", "server_tool_use"):
            provider_executed = kind == "server_tool_use"
            self._blocks[index] = _Block(kind, block.id, block.name)
            return [
                StreamPart(
                    P.TOOL_INPUT_START,
                    id=block.id,
                    tool_call_name=block.name,
                    provider_executed=provider_executed,
                )
            ]
        if kind.endswith("_tool_result"):  # web_search_tool_result and friends
            content = block.model_dump(mode="json", exclude_none=True)
            found: dict[str, Any] = {_KEY: {"content": content}}
            sources = _sources(content.get("content"))
            if sources:
                found["sources"] = sources
            return [
                StreamPart(
                    P.TOOL_RESULT,
                    id=block.tool_use_id,
                    tool_call_name=kind.removesuffix("_tool_result"),
                    provider_executed=True,
                    provider_metadata=found,
                )
            ]
        return []

    def _delta(self, index: int, delta: Any) -> list[StreamPart]:
        block = self._blocks.get(index)
        if block is None:
            return []
        kind = delta.type
        if kind == "text_delta":
            return [StreamPart(P.TEXT_DELTA, id=block.id, delta=delta.text)]
        if kind == "thinking_delta":
            return [StreamPart(P.REASONING_DELTA, id=block.id, delta=delta.thinking)]
        if kind == "signature_delta":
            block.signature += delta.signature
        elif kind == "input_json_delta" and delta.partial_json:
            block.chunks.append(delta.partial_json)
            return [StreamPart(P.TOOL_INPUT_DELTA, id=block.id, delta=delta.partial_json)]
        return []

    def _stop(self, index: int) -> list[StreamPart]:
        block = self._blocks.pop(index, None)
        if block is None:
            return []
        if block.kind == "text":
            return [StreamPart(P.TEXT_END, id=block.id)]
        if block.kind == "thinking":
            metadata = {_KEY: {"signature": block.signature}} if block.signature else None
            return [StreamPart(P.REASONING_END, id=block.id, provider_metadata=metadata)]
        arguments = "".join(block.chunks) or "{}"
        return [
            StreamPart(P.TOOL_INPUT_END, id=block.id),
            StreamPart(
                P.TOOL_CALL,
                id=block.id,
                tool_call_name=block.name,
                tool_call_input=arguments,
                provider_executed=block.kind == "server_tool_use",
            ),
        ]


def _sources(results: object) -> list[dict[str, str]]:
    """The pages a web search found (its `web_search_result`s), in chatd's neutral
    `sources` shape; an error result (`web_search_tool_result_error`) has none."""
    if not isinstance(results, list):
        return []
    return [
        {"url": r["url"], "title": r.get("title") or ""}
        for r in results
        if isinstance(r, dict) and r.get("type") == "web_search_result" and r.get("url")
    ]


class _TextDelta:
    """A text block's initial text, treated like its first delta."""

    type = "text_delta"

    def __init__(self, text: str) -> None:
        self.text = text


# --- prompt conversion ------------------------------------------------------------------


def to_anthropic_messages(
    prompt: list[Message],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """chatd messages → (system blocks, messages); same-role neighbours are merged."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in prompt:
        if message.role == Role.SYSTEM:
            blocks = [
                {"type": "text", "text": p.text} for p in message.content if isinstance(p, TextPart)
            ]
            system += _with_cache_mark(blocks, message.provider_options)
            continue
        role = "assistant" if message.role == Role.ASSISTANT else "user"
        blocks = _paired_server_tools([b for part in message.content for b in _blocks(part)])
        blocks = _with_cache_mark(blocks, message.provider_options)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def _paired_server_tools(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks without a server tool use whose result did not become a block: another
    provider's search (OpenAI, Gemini) has no Anthropic result to send, and Anthropic
    rejects a server tool use without one."""
    answered = {b.get("tool_use_id") for b in blocks if b["type"].endswith("_tool_result")}
    return [b for b in blocks if b["type"] != "server_tool_use" or b["id"] in answered]


def _add_prompt_caching(messages: Sequence[Message]) -> list[Message]:
    """A copy of the prompt with cache breakpoints (`_with_cache_mark` places them).

    Marks the last system message of the leading system block and the final two
    messages: the stable prefix and the moving tail are what Anthropic can reuse.
    """
    marked: set[int] = set()
    leading_system = -1
    for index, message in enumerate(messages):
        if message.role != Role.SYSTEM:
            break
        leading_system = index
    if leading_system >= 0:
        marked.add(leading_system)
    marked.update(range(max(len(messages) - 2, 0), len(messages)))
    return [
        msgspec.structs.replace(m, provider_options=_CACHE_MARK if i in marked else {})
        for i, m in enumerate(messages)
    ]


def _drop_unpaired_provider_calls(content: Sequence[MessagePart]) -> list[MessagePart]:
    """Remove provider-executed tool calls without a provider result, and orphan results.

    Anthropic rejects a request whose history holds a server tool use (web search,
    code execution) without its result, which is what an interrupted or truncated
    step leaves behind.
    """
    calls = {p.tool_call_id for p in content if isinstance(p, ToolCallPart) and p.provider_executed}
    results = {
        p.tool_call_id for p in content if isinstance(p, ToolResultPart) and p.provider_executed
    }
    paired = calls & results
    return [
        p
        for p in content
        if not (isinstance(p, ToolCallPart | ToolResultPart) and p.provider_executed)
        or p.tool_call_id in paired
    ]


def _sanitize_history(messages: Iterable[Message]) -> list[Message]:
    """Apply `_drop_unpaired_provider_calls` to every message, dropping ones left empty.

    The turns on either side of a dropped message then meet; when they have the same
    role (a user message, an assistant turn that was only a failed web search, the
    next user message) they become one message, as Anthropic wants roles to alternate.
    """
    out: list[Message] = []
    dropped = False
    for message in messages:
        if any(
            isinstance(p, ToolCallPart | ToolResultPart) and p.provider_executed
            for p in message.content
        ):
            content = _drop_unpaired_provider_calls(message.content)
            if not content:
                dropped = True
                continue
            message = msgspec.structs.replace(message, content=content)
        if dropped and out and out[-1].role == message.role:
            merged = [*out[-1].content, *message.content]
            out[-1] = msgspec.structs.replace(out[-1], content=merged)
        else:
            out.append(message)
        dropped = False
    return out


def _with_cache_mark(
    blocks: list[dict[str, Any]], options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """`_add_prompt_caching` marks breakpoints per message; Anthropic wants them on a block.

    The mark goes on the message's last block that may carry one (thinking
    blocks cannot).
    """
    anthropic_options = options.get(_KEY)
    mark = (
        anthropic_options.get("cache_control") if isinstance(anthropic_options, Mapping) else None
    )
    if not mark:
        return blocks
    for index in range(len(blocks) - 1, -1, -1):
        if blocks[index]["type"] not in ("thinking", "redacted_thinking"):
            blocks[index] = {**blocks[index], "cache_control": mark}
            break
    return blocks


def _blocks(part: Any) -> list[dict[str, Any]]:
    if isinstance(part, TextPart):
        return [{"type": "text", "text": part.text}] if part.text else []
    if isinstance(part, FilePart):
        text = file_text(part)
        if text is not None:
            return [{"type": "text", "text": text}]
        return [_file_block(part.media_type, part.data)]
    if isinstance(part, ReasoningPart):
        return _thinking_block(part)
    if isinstance(part, ToolCallPart):
        return [
            {
                "type": "server_tool_use" if part.provider_executed else "tool_use",
                "id": part.tool_call_id,
                "name": part.tool_name,
                "input": parse_tool_input(part.input),
            }
        ]
    if isinstance(part, ToolResultPart):
        return _tool_result_block(part)
    return []


def _file_block(media_type: str, data: bytes | str) -> dict[str, Any]:
    payload = data if isinstance(data, str) else base64.b64encode(data).decode("ascii")
    kind = "image" if media_type.startswith("image/") else "document"
    return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": payload}}


def _thinking_block(part: ReasoningPart) -> list[dict[str, Any]]:
    # Thinking goes back only with the signature Anthropic gave it; without one the
    # API rejects the block, so it is dropped (the model re-thinks instead).
    metadata = part.provider_metadata.get(_KEY, {})
    if not isinstance(metadata, Mapping):
        return []
    if metadata.get("redacted_data"):
        return [{"type": "redacted_thinking", "data": metadata["redacted_data"]}]
    if metadata.get("signature"):
        return [{"type": "thinking", "thinking": part.text, "signature": metadata["signature"]}]
    return []


def _tool_result_block(part: ToolResultPart) -> list[dict[str, Any]]:
    if part.provider_executed:
        content = part.provider_metadata.get(_KEY, {}).get("content")
        return [content] if isinstance(content, dict) else []
    output = part.output
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
    if isinstance(output, ToolResultMedia):
        block["content"] = [_file_block(output.media_type, output.data)]
        if output.text:
            block["content"].append({"type": "text", "text": output.text})
    elif isinstance(output, ToolResultText | ToolResultError) or output is None:
        block["content"] = result_text(output)
    if isinstance(output, ToolResultError):
        block["is_error"] = True
    return [block]


def _tool(tool: ToolDefinition) -> dict[str, Any] | None:
    """A function tool, or a server/client tool Anthropic defines in its own shape
    (`anthropic.web_search_20250305`, `anthropic.computer_20250124`, …); another
    provider's tool is left out."""
    kind = tool.provider_defined_type(_KEY)
    definition: dict[str, Any]
    if kind is not None:
        definition = {**tool.provider_args, "type": kind, "name": tool.name}
    elif tool.provider_type:
        return None
    else:
        definition = {"name": tool.name, "input_schema": tool.input_schema}
        if tool.description:
            definition["description"] = tool.description
    cache = tool.provider_options.get(_KEY, {})
    if isinstance(cache, Mapping) and cache.get("cache_control"):
        definition["cache_control"] = cache["cache_control"]
    return definition


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    return {"type": "tool", "name": choice}


# --- errors -----------------------------------------------------------------------------


@contextlib.contextmanager
def _map_errors(provider: str) -> Iterator[None]:
    """The SDK's exceptions → classified errors carrying the HTTP status; nothing else."""
    try:
        yield
    except anthropic.APIStatusError as err:
        status = err.status_code
        if status < 400:  # an `error` event inside a 200 stream
            status = _ERROR_TYPE_STATUS.get(_error_type(err.body), 0)
        raise classified(err, provider, status_code=status) from err
    except anthropic.APITimeoutError as err:
        raise classified(err, provider) from err
    except anthropic.APIConnectionError as err:
        raise transport_failure(err, provider) from err
    except httpx2.TransportError as err:  # a connection dropped while reading the stream
        raise transport_failure(err, provider) from err


def _error_type(body: object) -> str:
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("type", ""))
    return ""
