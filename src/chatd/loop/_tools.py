"""Tools as the loop runs them: definitions, responses, and the execution of one step's calls.

Tool failures are never run failures: an unknown, inactive, crashing or erroring
tool becomes an error result fed back to the model. Only cancellation escapes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from chatd.types import (
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultText,
)

__all__ = [
    "Tool",
    "ToolCall",
    "ToolResponse",
    "exclusive_policy_errors",
]


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


def _valid_utf8(text: str) -> str:
    # Tools may hand back text decoded with surrogateescape; the model (and JSON)
    # needs valid UTF-8, so invalid sequences become U+FFFD.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


async def run_tool(tool: Tool, call: ToolCallPart) -> tuple[ToolResultOutput, str]:
    """Run one tool, turning every failure except cancellation into an error output.

    Returns the output and the client metadata.
    """
    try:
        response = await tool.run(ToolCall(call.tool_call_id, call.tool_name, call.input))
    except asyncio.CancelledError:
        raise
    except Exception as err:
        return ToolResultError(str(err) or type(err).__name__), ""
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        return ToolResultError(f"tool panicked: {err!r}"), ""
    return response.to_output(), response.metadata


def exclusive_policy_errors(
    calls: list[ToolCallPart], exclusive: frozenset[str]
) -> list[str] | None:
    """Error texts, in call order, when a batch breaks the exclusive-tool policy; else None.

    A tool in `exclusive` must be the only local call of its step. When it is not,
    nothing runs and every call is told why, so the model can retry correctly.
    """
    if len(calls) < 2 or not exclusive:
        return None
    blocking = next((c.tool_name for c in calls if c.tool_name in exclusive), None)
    if blocking is None:
        return None
    messages = []
    for call in calls:
        if call.tool_name in exclusive:
            messages.append(
                f"{call.tool_name} must be called alone, without other tools in the same "
                f"batch. Retry with only the {call.tool_name} call."
            )
        else:
            messages.append(
                f"this tool was skipped because {blocking} must run alone in its batch. "
                f"Retry your tool calls without {blocking}, or call {blocking} separately first."
            )
    return messages
