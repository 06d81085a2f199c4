"""Reading a tool call's arguments, and wrapping a handler so bad input is an error result.

Built-in tools never raise for bad input (spec §7.2): a missing field, a wrong
type, a path outside the workspace or a missing file becomes an error result the
model can read and correct. This module must not know any particular tool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from chatd.core.durations import parse_duration as core_parse_duration
from chatd.loop import Tool, ToolCall, ToolResponse

__all__ = [
    "Arguments",
    "ToolInputError",
    "format_seconds",
    "json_text",
    "make_tool",
    "object_schema",
    "parse_duration",
]


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A tool's input schema: an object of these properties and no others."""
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


class ToolInputError(Exception):
    """Bad input to a tool; its message is what the model is told."""


class Arguments:
    """Typed access to a call's JSON arguments; every getter raises `ToolInputError`."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def has(self, key: str) -> bool:
        return self._values.get(key) is not None

    def text(self, key: str, *, default: str | None = None) -> str:
        value = self._values.get(key)
        if value is None:
            if default is None:
                raise ToolInputError(f"{key} is required")
            return default
        if not isinstance(value, str):
            raise ToolInputError(f"{key} must be a string")
        return value

    def integer(self, key: str, *, default: int, minimum: int) -> int:
        value = self._values.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ToolInputError(f"{key} must be an integer")
        if value < minimum:
            raise ToolInputError(f"{key} must be at least {minimum}")
        return value

    def flag(self, key: str, *, default: bool = False) -> bool:
        value = self._values.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ToolInputError(f"{key} must be true or false")
        return value

    def items(self, key: str) -> list[Any]:
        value = self._values.get(key)
        if not isinstance(value, list):
            raise ToolInputError(f"{key} must be a list")
        return value

    def duration(self, key: str, *, default: float) -> float:
        value = self._values.get(key)
        if value is None:
            return default
        return parse_duration(value, key)


def parse_duration(value: object, key: str = "duration") -> float:
    """Seconds from a Go-style duration ("30s", "5m", "1h30m", "500ms") or a number of seconds."""
    try:
        return core_parse_duration(value, key)
    except ValueError as err:
        raise ToolInputError(str(err)) from None


def format_seconds(seconds: float) -> str:
    """`30`, `0.5`, `14400`: how a duration in seconds is written in messages."""
    return f"{seconds:g}"


Handler = Callable[[Arguments], Awaitable[ToolResponse]]
DescribeOSError = Callable[[OSError], str]


def make_tool(
    name: str,
    description: str,
    input_schema: dict[str, Any],
    handler: Handler,
    *,
    describe_os_error: DescribeOSError,
    timeout: float | None = None,
) -> Tool:
    """A `Tool` whose bad input, OS errors and time-outs become error results."""

    async def run(call: ToolCall) -> ToolResponse:
        try:
            values = call.arguments()
        except ValueError as err:
            return ToolResponse.error(f"{name}: the input is not a JSON object ({err}).")
        try:
            if timeout is None:
                return await handler(Arguments(values))
            async with asyncio.timeout(timeout):
                return await handler(Arguments(values))
        except ToolInputError as err:
            return ToolResponse.error(str(err))
        except TimeoutError:  # before OSError, of which it is a subclass
            return ToolResponse.error(f"{name} timed out after {format_seconds(timeout or 0)} s")
        except OSError as err:
            return ToolResponse.error(describe_os_error(err))

    return Tool(name=name, description=description, run=run, input_schema=input_schema)


def json_text(value: object) -> str:
    """Compact JSON for results (non-ASCII kept readable)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
