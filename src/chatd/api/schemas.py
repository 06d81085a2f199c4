"""The request bodies of the chat routes, and what every router shares to answer.

Bodies validate shape only (lengths, patterns, which fields exist, strict types:
`"yes"` is not a boolean nor `"1"` an integer): rules that depend on state or
configuration are the store's and the routes'. `Int64` is every integer query and
header parameter (ASCII digits within a 64-bit column); `McpSlug` is shared by the
chat's tool selection and the MCP server routes; `json_response` encodes every JSON
answer the same way.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi.responses import Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from chatd.store import MAX_CHAT_FILES
from chatd.types import FilePart, MessagePart, TextPart, encode

__all__ = [
    "ASCII_DIGITS",
    "MAX_FILE_BYTES",
    "MAX_INT64",
    "MAX_MESSAGE_BYTES",
    "ApprovePlan",
    "ChatMode",
    "CreateChat",
    "DynamicToolSpec",
    "EditMessage",
    "Int64",
    "McpSlug",
    "MessageWithFiles",
    "PatchChat",
    "SendMessage",
    "Strict",
    "ToolConfig",
    "ToolOutput",
    "ToolResultIn",
    "ToolResults",
    "json_response",
]

# 256 KiB of UTF-8 per message (spec §6.6).
MAX_MESSAGE_BYTES = 256 * 1024
# SQLite's INTEGER and PostgreSQL's BIGINT: no position, seq or count goes past it.
MAX_INT64 = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def _ascii_digits(value: object) -> object:
    # `int()` takes "²", "٣", "+1", " 1" and "1_000", and a 5,000-digit string is
    # an error of its own: a parameter is plain digits, and never past 64 bits.
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("must be a non-negative integer in ASCII digits")
        if len(value) > len(str(MAX_INT64)):
            raise ValueError(f"must be at most {MAX_INT64}")
    return value


#: Strict parsing for an integer parameter; after its bounds, so the OpenAPI schema
#: shows them: `Annotated[int, Field(ge=1, le=200), ASCII_DIGITS]`.
ASCII_DIGITS = BeforeValidator(_ascii_digits)
#: A position, seq or cursor in a query or header parameter.
Int64 = Annotated[int, Field(ge=0, le=MAX_INT64), ASCII_DIGITS]
# 10 MiB an uploaded file (upstream's chat file limit).
MAX_FILE_BYTES = 10 << 20
# Spec §3.2 `[a-z0-9_-]{1,32}`, without a leading '_'/'-' or a double '_': the model
# sees `<slug>__<tool>`, which must split back unambiguously.
McpSlug = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=32, pattern=r"^[a-z0-9](?:[a-z0-9-]|_[a-z0-9-])*_?$"
    ),
]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        encode(body), status_code=status, media_type="application/json", headers=headers
    )


def _lone_surrogate(value: Any, where: str = "body") -> str | None:
    """Where in a JSON value a string (or key) holds a lone surrogate, if one does."""
    if isinstance(value, str):
        return where if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        named = {f"{where}.{k.encode('ascii', 'backslashreplace').decode()}": k for k in value}
        children = [*named.items(), *zip(named, value.values(), strict=True)]
    elif isinstance(value, list):
        children = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    else:
        return None
    return next((found for path, c in children if (found := _lone_surrogate(c, path))), None)


class Strict(BaseModel):
    """A body that refuses fields it does not name, values of another JSON type
    (`"yes"` or `1` for a boolean, `"1"` for an integer), and strings that are not
    text: JSON can escape a lone surrogate (`"\\ud800"`), which no UTF-8 column stores.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        where = _lone_surrogate(data)
        if where is not None:
            raise ValueError(f"{where}: a lone surrogate is not text")
        return data


def _check_size(value: str) -> str:
    if len(value.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the message must be at most {MAX_MESSAGE_BYTES} bytes")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("the message must not be empty")
    return _check_size(value)


FileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MessageWithFiles(Strict):
    """A message's text and the uploaded files it sends (POST /api/chats/files); a
    message with files may have no text."""

    message: str = ""
    file_ids: list[FileId] = Field(default_factory=list, max_length=MAX_CHAT_FILES)

    _size = field_validator("message")(_check_size)

    @model_validator(mode="after")
    def _not_empty(self) -> MessageWithFiles:
        if not self.message.strip() and not self.file_ids:
            raise ValueError("the message must not be empty (send text, file_ids, or both)")
        return self

    def parts(self) -> list[MessagePart]:
        """The files first (models read a picture before the question about it), then
        the text; the store fills in each file's name and media type."""
        files: list[MessagePart] = [FilePart(file_id=file_id) for file_id in self.file_ids]
        return files + ([TextPart(self.message)] if self.message.strip() else [])


class DynamicToolSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=4096)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolConfig(Strict):
    """Which tools the chat's runs get. Built-in tools run commands and edit files in the
    chat's workspace on the server, so they are opt-in: `"builtin": "all"` or a list."""

    builtin: Literal["all"] | list[str] | None = None
    mcp_servers: list[McpSlug] | None = Field(default=None, max_length=64)
    dynamic: list[DynamicToolSpec] = Field(default_factory=list, max_length=64)
    stop_after: list[str] = Field(default_factory=list)
    exclusive: list[str] = Field(default_factory=list)
    # Provider-executed tools ("web_search"); the chat's model config must allow them.
    provider: list[str] = Field(default_factory=list, max_length=8)


# A chat's mode: "plan" (read-only tools and propose_plan until approved) or null.
ChatMode = Literal["plan"] | None


class CreateChat(MessageWithFiles):
    model: str | None = Field(default=None, max_length=256)
    mode: ChatMode = None
    title: str | None = Field(default=None, min_length=1, max_length=256)
    tools: ToolConfig | None = None
    system_prompt: str | None = Field(default=None, max_length=65536)


class SendMessage(MessageWithFiles):
    busy_behavior: Literal["queue", "interrupt"] = "queue"
    model: str | None = Field(default=None, max_length=256)


class EditMessage(Strict):
    """The new text; `file_ids` replaces the message's files (omitted: it keeps them)."""

    message: str
    file_ids: list[FileId] | None = Field(default=None, max_length=MAX_CHAT_FILES)

    _text = field_validator("message")(_check_text)

    def parts(self) -> list[MessagePart]:
        files: list[MessagePart] = [FilePart(file_id=file_id) for file_id in self.file_ids or []]
        return [*files, TextPart(self.message)]


class ToolOutput(Strict):
    type: Literal["text", "error", "media"]
    text: str | None = None
    error: str | None = None
    data: str | None = None
    media_type: str | None = None


class ToolResultIn(Strict):
    tool_call_id: str = Field(min_length=1, max_length=256)
    output: ToolOutput


class ToolResults(Strict):
    results: list[ToolResultIn] = Field(min_length=1, max_length=64)


class PatchChat(Strict):
    """What is present changes; `"mode": null` leaves plan mode, no `mode` keeps it."""

    title: str | None = Field(default=None, min_length=1, max_length=256)
    archived: bool | None = None
    mode: ChatMode = None


class ApprovePlan(Strict):
    """The message that approves the plan; the default asks the model to carry it out."""

    message: str = Field(default="The plan is approved: carry it out.", min_length=1)

    _text = field_validator("message")(_check_text)
