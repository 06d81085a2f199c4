"""The contracts between the loop and what it drives: the `Model` protocol and `Tool`.

A model turns a `Call` (prompt, tool definitions, sampling settings) into a stream
of `StreamPart`s; a tool turns a `ToolCall` into a `ToolResponse`. Providers
(`chatd.providers`) and tools (`chatd.tools`) implement these, the loop
(`chatd.loop`) consumes them. Like `chatd.types`, this is core: it imports only
`chatd.types`, the standard library and third-party packages, never a chatd layer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from chatd.types import (
    Message,
    MessagePart,
    StreamPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultText,
    Usage,
)

__all__ = [
    "MODEL_HOOKS",
    "Call",
    "GenerateResponse",
    "Model",
    "ModelHooks",
    "ModelSettings",
    "ProviderTool",
    "Tool",
    "ToolCall",
    "ToolDefinition",
    "ToolResponse",
]


# --- models -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool as the model sees it.

    A function tool (the default) has a description and a JSON-schema object for
    its input. A provider-defined tool (web search, computer use) names instead the
    provider's own tool type as `"<provider>.<type>"` in `provider_type`, e.g.
    `"anthropic.web_search_20250305"`, and carries that type's settings in
    `provider_args`; that provider's adapter sends it in the provider's own shape.
    """

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    provider_options: dict[str, Any] = field(default_factory=dict)
    provider_type: str = ""
    provider_args: dict[str, Any] = field(default_factory=dict)

    def provider_defined_type(self, provider: str) -> str | None:
        """The tool type of `provider` this definition names, or None (a function tool, or
        another provider's tool)."""
        prefix, _, kind = self.provider_type.partition(".")
        return kind if prefix == provider and kind else None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Sampling settings copied into every call; `None` leaves the provider's default."""

    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    prompt: list[Message]
    tools: list[ToolDefinition] = field(default_factory=list)
    # "auto", "none", "required", or the name of one tool.
    tool_choice: str = "auto"
    settings: ModelSettings = field(default_factory=ModelSettings)
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GenerateResponse:
    """A non-streamed answer (used for summaries and titles)."""

    content: list[MessagePart]
    usage: Usage = field(default_factory=Usage)


@runtime_checkable
class Model(Protocol):
    """What the loop needs from a model. `stream` may raise while opening the stream.

    A model may also define any of the optional hooks of `ModelHooks`; the loop
    calls a hook only when the model has it, and a model without hooks gets the
    history, the step content and the provider options exactly as the loop holds
    them. A model wrapping another one should forward the hooks of `MODEL_HOOKS`
    its inner model has, and no others.
    """

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def stream(self, call: Call) -> AsyncIterator[StreamPart]: ...

    async def generate(self, call: Call) -> GenerateResponse: ...


class ModelHooks(Protocol):
    """The optional hooks of a `Model`: where a provider's quirks meet the loop.

    Each is a plain (synchronous) method; a model defines the ones it needs. None
    of them may change its argument: they return new values.
    """

    def prepare_prompt(self, messages: list[Message]) -> list[Message]:
        """The prompt to send for the history `messages`, before every step's request.

        Called after compaction and `RunOptions.prepare_messages`, with the full
        history the loop holds; the loop's history itself is not changed, so what
        this adds or drops (cache marks, parts the provider rejects) is never
        persisted. Not called for summaries.
        """
        ...

    def persistable_content(self, content: list[MessagePart]) -> list[MessagePart]:
        """What a step keeps of `content`: it is persisted and sent back next step.

        Called on every finished step before it is persisted, and on an interrupted
        step's partial content before the loop adds an error result for each tool
        call left without one. Returning nothing persists nothing.
        """
        ...

    def break_response_chain(self, provider_options: dict[str, Any]) -> dict[str, Any] | None:
        """`provider_options` without the key that continues a provider-stored response.

        `None` when the options continue no stored response. Called after every
        persisted step (so a run leaves the chain after its first) and when a retry
        is classified `chain_broken`. When it returns options, the loop sends those
        on every later attempt and step (the model then sends the full history) and
        calls `RunOptions.disable_chain_mode`.
        """
        ...


# The names of `ModelHooks`, for wrappers that forward them.
MODEL_HOOKS = ("break_response_chain", "persistable_content", "prepare_prompt")


# --- tools ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a tool receives: the call id, its name and the raw JSON input text."""

    id: str
    name: str
    input: str

    def arguments(self) -> dict[str, Any]:
        """The input parsed as a JSON object (`{}` for empty input); raises ValueError."""
        if not self.input.strip():
            return {}
        value = json.loads(self.input)
        if not isinstance(value, dict):
            raise ValueError("tool input must be a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class ToolResponse:
    """What a tool returns. `type` is "text", "image" or "media" (the latter two carry `data`)."""

    content: str = ""
    is_error: bool = False
    type: str = "text"
    data: bytes = b""
    media_type: str = ""
    metadata: str = ""  # JSON text for clients (client_metadata), never sent to the model
    stop_turn: bool = False

    @classmethod
    def text(cls, content: str) -> ToolResponse:
        return cls(content=content)

    @classmethod
    def error(cls, content: str) -> ToolResponse:
        return cls(content=content, is_error=True)

    @classmethod
    def media(cls, data: bytes, media_type: str, caption: str = "") -> ToolResponse:
        return cls(type="media", data=data, media_type=media_type, content=caption)

    def with_metadata(self, value: object) -> ToolResponse:
        """A copy carrying `value` JSON-encoded as client metadata (unchanged if unencodable)."""
        try:
            return replace(self, metadata=json.dumps(value))
        except (TypeError, ValueError):
            return self

    def to_output(self) -> ToolResultOutput:
        if self.is_error:
            return ToolResultError(_valid_utf8(self.content))
        if self.type in ("image", "media"):
            return ToolResultMedia(
                data=base64.b64encode(self.data).decode("ascii"),
                media_type=self.media_type,
                text=_valid_utf8(self.content),
            )
        return ToolResultText(_valid_utf8(self.content))


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the loop can run locally. `input_schema` is a JSON-schema object."""

    name: str
    description: str
    run: Callable[[ToolCall], Awaitable[ToolResponse]]
    input_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    provider_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderTool:
    """A provider-native tool: `definition` goes to the provider as it is.

    Without a `runner` the provider executes its calls (web search) and the loop
    never runs them. With one, the loop runs its calls locally (computer use), even
    when its name is not in `active_tools`. `result_provider_metadata`, given a
    successful runner response, returns provider metadata for the result (e.g.
    `{"openai": {"detail": "original"}}`); the result carries it back to the model
    in the next request. `None` or `{}` adds nothing.
    """

    definition: ToolDefinition
    runner: Tool | None = None
    result_provider_metadata: Callable[[ToolResponse], dict[str, Any] | None] | None = None


def _valid_utf8(text: str) -> str:
    # Tools may hand back text decoded with surrogateescape; the model (and JSON)
    # needs valid UTF-8, so invalid sequences become U+FFFD.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text
