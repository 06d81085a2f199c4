"""What every SDK-backed provider shares: the model base class, context windows, small codecs.

Each provider module keeps its own request building, stream translation and
`_map_errors()`; this module holds only the pieces that are the same for all of
them (key handling before I/O, `generate()` on top of `stream()`, turning a dropped
connection into a retryable failure). It imports no SDK.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Generic, TypeVar

from chatd.errors import (
    ClassifiedError,
    ClassifiedException,
    ErrorKind,
    classify,
    display_name,
    with_classification,
)
from chatd.protocols import Call, GenerateResponse
from chatd.providers._config import ModelConfig, missing_key_error
from chatd.types import (
    FilePart,
    MessagePart,
    ReasoningPart,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultText,
    Usage,
)

__all__ = [
    "CONTEXT_WINDOW_KEY",
    "SDKModel",
    "classified",
    "collect",
    "context_window",
    "data_url",
    "file_text",
    "finish_metadata",
    "parse_tool_input",
    "result_text",
    "transport_failure",
    "truncated_stream",
]

P = StreamPartType
C = TypeVar("C")

# The loop finds the context limit by searching provider metadata for keys like this
# one (chatd.loop.find_context_limit); the finish part carries it at the top level.
CONTEXT_WINDOW_KEY = "context_window"

# Context windows (input tokens) of well-known model families, longest prefix wins.
# Models not listed report none; `ModelConfig.context_limit` overrides either way.
_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-": 200_000,
    "gemini-1.5-pro": 2_097_152,
    "gemini-": 1_048_576,
}


def context_window(config: ModelConfig) -> int:
    """The model's context window: the config's override, else a known value, else 0."""
    if config.context_limit > 0:
        return config.context_limit
    name = config.model.lower().rpartition("/")[2]  # "openai/gpt-4o" on OpenRouter
    best = ""
    for prefix in _CONTEXT_WINDOWS:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return _CONTEXT_WINDOWS[best] if best else 0


def finish_metadata(config: ModelConfig, provider_key: str, **fields: Any) -> dict[str, Any]:
    """The finish part's provider metadata: provider fields, plus the context window."""
    metadata: dict[str, Any] = {}
    details = {k: v for k, v in fields.items() if v not in (None, "")}
    if details:
        metadata[provider_key] = details
    if window := context_window(config):
        metadata[CONTEXT_WINDOW_KEY] = window
    return metadata


def parse_tool_input(text: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object; malformed or non-object input is {}."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def result_text(output: ToolResultOutput | None) -> str:
    """The text of a tool result as the model should read it."""
    if isinstance(output, ToolResultText):
        return output.text
    if isinstance(output, ToolResultError):
        return output.error or "the tool failed without a message"
    if isinstance(output, ToolResultMedia):
        return output.text or f"[{output.media_type or 'media'} attached]"
    return ""


def data_url(media_type: str, data: bytes | str) -> str:
    """`data:<type>;base64,<payload>`; `str` data is taken as already base64."""
    payload = data if isinstance(data, str) else base64.b64encode(data).decode("ascii")
    return f"data:{media_type or 'application/octet-stream'};base64,{payload}"


def file_text(part: FilePart) -> str | None:
    """A text file as the text the model reads (no provider takes text/plain as a
    document everywhere, so text files are inlined); None for any other file."""
    if not part.media_type.startswith("text/"):
        return None
    name = json.dumps(part.filename or "attachment", ensure_ascii=False)
    content = part.data.decode("utf-8", "replace")
    end = "" if content.endswith("\n") else "\n"
    return f"<file name={name}>\n{content}{end}</file>"


def classified(
    error: BaseException, provider: str, *, status_code: int = 0, retry_after: float = 0.0
) -> ClassifiedException:
    """Classify an SDK error for `provider`, pinning a status or retry-after the SDK knew."""
    found = classify(error, provider=provider)
    if status_code and found.status_code != status_code:
        found = classify(_WithStatus(error, status_code), provider=provider)
    if retry_after > found.retry_after:
        found = dataclasses.replace(found, retry_after=retry_after)
    return with_classification(error, found)


class _WithStatus(Exception):
    """Re-reads `error` with a known status (the rules weigh status before text)."""

    def __init__(self, error: BaseException, status_code: int) -> None:
        super().__init__(str(error))
        self.status_code = status_code
        self.__cause__ = error


def transport_failure(error: BaseException, provider: str) -> ClassifiedException:
    """A connection dropped or reset mid-request: the provider is briefly unreachable."""
    root = error.__cause__ or error
    return with_classification(
        error,
        ClassifiedError(
            kind=ErrorKind.TIMEOUT,
            provider=provider,
            retryable=True,
            detail=f"{type(root).__name__}: {root}",
        ),
    )


def truncated_stream(provider: str, text: str) -> ClassifiedException:
    """A stream that ended cleanly but without its terminal event: retry it.

    `text` names what was missing ("anthropic stream closed before message_stop");
    `classify` knows the providers' own wordings, anything else is a timeout too.
    """
    error = ConnectionError(text)
    found = classify(error, provider=provider)
    if not found.retryable:
        closed = f"{display_name(provider)} stream closed unexpectedly"
        found = ClassifiedError(
            kind=ErrorKind.TIMEOUT,
            provider=provider,
            retryable=True,
            message=f"{closed[:1].upper()}{closed[1:]} before the response completed.",
            detail=text,
        )
    return with_classification(error, found)


class SDKModel(abc.ABC, Generic[C]):
    """Base of the SDK-backed models: config, key check before I/O, lazy client, generate().

    Subclasses set `provider_name`/`key_envs`, build the SDK client in `_make_client`
    and implement `stream`.
    """

    key_envs: tuple[str, ...] = ()
    key_required: bool = True

    def __init__(
        self,
        config: ModelConfig,
        *,
        provider: str = "",
        key_envs: tuple[str, ...] | None = None,
        key_required: bool | None = None,
    ) -> None:
        self.config = config
        self._provider = provider or config.provider
        if key_envs is not None:
            self.key_envs = key_envs
        if key_required is not None:
            self.key_required = key_required
        self._client: C | None = None

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def model(self) -> str:
        return self.config.model

    def client(self) -> C:
        """The SDK client, created on first use; raises `missing_key` before any I/O."""
        if self._client is None:
            key = self.config.resolve_api_key(self.key_envs)
            if not key and self.key_required:
                raise missing_key_error(self._provider, self.config, self.key_envs)
            # OpenAI-compatible servers often need no key, but the SDK insists on one.
            self._client = self._make_client(key or "not-needed")
        elif self.key_required and not self.config.resolve_api_key(self.key_envs):
            raise missing_key_error(self._provider, self.config, self.key_envs)
        return self._client

    @abc.abstractmethod
    def _make_client(self, api_key: str) -> C:
        """The provider's SDK client for `api_key` (each provider module defines it)."""

    async def aclose(self) -> None:
        """Close the SDK client's connections (a new one is made on next use)."""
        client, self._client = self._client, None
        if client is not None:
            await self._close_client(client)

    async def _close_client(self, client: C) -> None:
        close = getattr(client, "close", None)
        if close is not None:
            await close()

    @abc.abstractmethod
    async def stream(self, call: Call) -> AsyncIterator[StreamPart]:
        """Open the provider's stream for `call` (each provider module defines it)."""

    async def generate(self, call: Call) -> GenerateResponse:
        """Answer without streaming to the caller: the stream, assembled."""
        parts = await self.stream(call)
        return await collect(parts)

    def extra_body(self, call: Call, provider_key: str) -> dict[str, Any]:
        """Provider options from the config, overridden by the call's for `provider_key`."""
        body: dict[str, Any] = dict(self.config.provider_options)
        from_call = call.provider_options.get(provider_key)
        if isinstance(from_call, Mapping):
            body.update(from_call)
        return body


async def collect(parts: AsyncIterator[StreamPart]) -> GenerateResponse:
    """Assemble a stream into message parts (text, reasoning, tool calls) and usage."""
    content: list[MessagePart] = []
    open_blocks: dict[tuple[str, str], list[str]] = {}
    usage = Usage()
    async for part in parts:
        kind = part.type
        if kind in (P.TEXT_START, P.REASONING_START):
            open_blocks[(kind[:4], part.id)] = [part.delta] if part.delta else []
        elif kind in (P.TEXT_DELTA, P.REASONING_DELTA):
            open_blocks.setdefault((kind[:4], part.id), []).append(part.delta)
        elif kind == P.TEXT_END:
            text = "".join(open_blocks.pop(("text", part.id), []))
            content.append(TextPart(text, provider_metadata=part.provider_metadata or {}))
        elif kind == P.REASONING_END:
            text = "".join(open_blocks.pop(("reas", part.id), []))
            content.append(ReasoningPart(text, provider_metadata=part.provider_metadata or {}))
        elif kind == P.TOOL_CALL:
            content.append(
                ToolCallPart(
                    tool_call_id=part.id,
                    tool_name=part.tool_call_name,
                    input=part.tool_call_input,
                    provider_executed=part.provider_executed,
                    provider_metadata=part.provider_metadata or {},
                )
            )
        elif kind == P.FINISH and part.usage is not None:
            usage = part.usage
    return GenerateResponse(content=content, usage=usage)
