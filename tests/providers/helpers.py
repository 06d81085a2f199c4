"""Shared helpers for provider tests: run a call to completion or to its classified failure."""

from __future__ import annotations

from chatd.errors import ClassifiedError, classify
from chatd.loop import Call, Model, ToolDefinition
from chatd.types import Message, Role, StreamPart, TextPart

HELLO = Call(prompt=[Message(Role.USER, [TextPart("Hello")])])
WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


async def drain(model: Model, call: Call = HELLO) -> list[StreamPart]:
    stream = await model.stream(call)
    return [part async for part in stream]


async def failure(model: Model, call: Call = HELLO) -> tuple[ClassifiedError, list[StreamPart]]:
    """Run `call` expecting it to fail; the classification and the parts seen before."""
    parts: list[StreamPart] = []
    try:
        stream = await model.stream(call)
        async for part in stream:
            parts.append(part)
    except Exception as err:
        return classify(err), parts
    raise AssertionError(f"expected the call to fail, got {parts}")
