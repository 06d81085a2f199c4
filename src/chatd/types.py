"""The data chatd moves around: messages, their parts, stream parts, usage.

These are `msgspec.Struct`s, not pydantic models or dataclasses: a stream part is
created for every token a model emits, and on CPython 3.11 a frozen msgspec struct
costs ~0.1 µs to build against ~0.5 µs for a slotted dataclass, ~1.8 µs for a frozen
one and ~1.3 µs for a pydantic model (`benchmarks/types_repr.py` re-measures it).
msgspec also gives the tagged unions (`type` discriminator, snake_case values) and
the JSON codec the store and the SSE stream use.

This module holds data only: no I/O, no provider logic, no behaviour beyond small
pure helpers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

__all__ = [
    "MESSAGE_KIND_SUMMARY",
    "CallWarning",
    "FilePart",
    "FinishReason",
    "Message",
    "MessagePart",
    "PendingToolCall",
    "PersistedStep",
    "ReasoningPart",
    "Role",
    "SourcePart",
    "StreamPart",
    "StreamPartType",
    "TextPart",
    "ToolCallPart",
    "ToolResultError",
    "ToolResultMedia",
    "ToolResultOutput",
    "ToolResultPart",
    "ToolResultText",
    "Usage",
    "decode_message",
    "decode_parts",
    "encode",
    "error_text",
]


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class FinishReason(enum.StrEnum):
    """Why a model stopped. Only `tool_calls` lets the loop run another step."""

    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    TOOL_CALLS = "tool_calls"
    ERROR = "error"
    OTHER = "other"
    UNKNOWN = "unknown"


class StreamPartType(enum.StrEnum):
    WARNINGS = "warnings"
    TEXT_START = "text_start"
    TEXT_DELTA = "text_delta"
    TEXT_END = "text_end"
    REASONING_START = "reasoning_start"
    REASONING_DELTA = "reasoning_delta"
    REASONING_END = "reasoning_end"
    TOOL_INPUT_START = "tool_input_start"
    TOOL_INPUT_DELTA = "tool_input_delta"
    TOOL_INPUT_END = "tool_input_end"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    SOURCE = "source"
    FINISH = "finish"
    ERROR = "error"


class Usage(msgspec.Struct, frozen=True, omit_defaults=True):
    """Token counts of one model call, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0

    def context_tokens(self) -> int:
        """Tokens the prompt occupied: input plus cache reads and writes, else the total."""
        tokens = (
            max(self.input_tokens, 0)
            + max(self.cache_read_tokens, 0)
            + max(self.cache_creation_tokens, 0)
        )
        return tokens if tokens > 0 else max(self.total_tokens, 0)


class CallWarning(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str = "other"
    setting: str = ""
    tool: str = ""
    details: str = ""
    message: str = ""


# --- tool result outputs -------------------------------------------------------------


class ToolResultText(msgspec.Struct, tag="text", tag_field="type", frozen=True):
    text: str


class ToolResultError(msgspec.Struct, tag="error", tag_field="type", frozen=True):
    """An error fed back to the model. `error` is the message; `None` means "no detail"."""

    error: str | None = None


class ToolResultMedia(msgspec.Struct, tag="media", tag_field="type", frozen=True):
    data: str  # base64 text
    media_type: str = ""
    text: str = ""  # optional caption


ToolResultOutput = ToolResultText | ToolResultError | ToolResultMedia


def error_text(output: ToolResultError) -> str:
    return output.error or ""


MESSAGE_KIND_SUMMARY = "summary"

# --- message parts (history, persisted steps and live publishing) --------------------


class TextPart(msgspec.Struct, tag="text", tag_field="type", frozen=True, omit_defaults=True):
    text: str
    provider_metadata: dict[str, Any] = {}


class ReasoningPart(
    msgspec.Struct, tag="reasoning", tag_field="type", frozen=True, omit_defaults=True
):
    text: str
    provider_metadata: dict[str, Any] = {}


class FilePart(msgspec.Struct, tag="file", tag_field="type", frozen=True, omit_defaults=True):
    """A file in a message: its bytes inline, or `file_id` naming an uploaded file.

    History stores uploaded files by id only; the store fills in `data` when it
    loads the model's view, so providers always see the bytes.
    """

    data: bytes = b""
    media_type: str = ""
    filename: str = ""
    file_id: str = ""
    provider_metadata: dict[str, Any] = {}


class SourcePart(msgspec.Struct, tag="source", tag_field="type", frozen=True, omit_defaults=True):
    id: str = ""
    source_type: str = "url"
    url: str = ""
    title: str = ""
    media_type: str = ""
    filename: str = ""
    provider_metadata: dict[str, Any] = {}


class ToolCallPart(
    msgspec.Struct, tag="tool_call", tag_field="type", frozen=True, omit_defaults=True
):
    """A tool call. `input` is the raw JSON argument text exactly as the model sent it.

    Live publishing uses `args_delta` for streamed argument fragments; persisted
    calls always carry the full `input`.
    """

    tool_call_id: str
    tool_name: str = ""
    input: str = ""
    provider_executed: bool = False
    invalid: bool = False
    validation_error: str = ""
    args_delta: str = ""
    created_at: datetime | None = None
    provider_metadata: dict[str, Any] = {}


class ToolResultPart(
    msgspec.Struct, tag="tool_result", tag_field="type", frozen=True, omit_defaults=True
):
    tool_call_id: str
    tool_name: str = ""
    output: ToolResultOutput | None = None
    provider_executed: bool = False
    client_metadata: str = ""
    created_at: datetime | None = None
    provider_metadata: dict[str, Any] = {}

    @property
    def is_error(self) -> bool:
        return isinstance(self.output, ToolResultError)


MessagePart = TextPart | ReasoningPart | FilePart | SourcePart | ToolCallPart | ToolResultPart


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of history. `kind` marks chatd's own messages ("summary" for a
    compaction summary); providers see every message as its role alone."""

    role: Role
    content: list[MessagePart]
    provider_options: dict[str, Any] = {}
    kind: str = ""

    @property
    def is_summary(self) -> bool:
        return self.kind == MESSAGE_KIND_SUMMARY


# --- stream parts ---------------------------------------------------------------------


class StreamPart(msgspec.Struct, frozen=True, omit_defaults=True):
    """One item of a model's stream. Flat, with a `type` discriminator (see StreamPartType).

    Flat rather than one class per type: the loop dispatches on `type` for every
    token, and one struct keeps that a single attribute load.
    """

    type: StreamPartType
    id: str = ""
    delta: str = ""
    tool_call_name: str = ""
    tool_call_input: str = ""
    provider_executed: bool = False
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    error: BaseException | None = None
    warnings: list[CallWarning] = []
    source_type: str = ""
    url: str = ""
    title: str = ""
    provider_metadata: dict[str, Any] | None = None


# --- codec ----------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_message_decoder = msgspec.json.Decoder(Message)
_parts_decoder = msgspec.json.Decoder(list[MessagePart])


def encode(value: object) -> bytes:
    """JSON-encode any chatd struct (or plain JSON value)."""
    return _encoder.encode(value)


def decode_message(data: bytes | str) -> Message:
    return _message_decoder.decode(data)


def decode_parts(data: bytes | str) -> list[MessagePart]:
    return _parts_decoder.decode(data)


@dataclass(frozen=True, slots=True)
class PendingToolCall:
    """A call the client must execute (a dynamic tool), awaiting its result."""

    tool_call_id: str
    tool_name: str
    args: str


@dataclass(slots=True)
class PersistedStep:
    """One finished (or interrupted) step, handed to `persist_step`.

    `content` is the assistant's blocks followed by local tool results; the
    persistence layer splits it by role (see `to_response_messages`).
    """

    content: list[MessagePart]
    usage: Usage = field(default_factory=Usage)
    context_limit: int | None = None
    provider_response_id: str = ""
    runtime: float = 0.0  # seconds; 0 means "not measured" (interrupted steps)
    pending_dynamic_tool_calls: list[PendingToolCall] = field(default_factory=list)
    tool_call_created_at: dict[str, datetime] = field(default_factory=dict)
    tool_result_created_at: dict[str, datetime] = field(default_factory=dict)
