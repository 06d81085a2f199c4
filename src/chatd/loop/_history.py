"""Pure functions over history: step content → messages, and the context limit in metadata.

Nothing here performs I/O or keeps state; the run module calls these between steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from chatd.types import (
    FilePart,
    Message,
    MessagePart,
    ReasoningPart,
    Role,
    SourcePart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

__all__ = ["find_context_limit", "to_response_messages"]


def to_response_messages(content: Sequence[MessagePart]) -> list[Message]:
    """Split one step's content into an assistant message and a tool message.

    Blank text and reasoning are dropped, sources are not sent back to the model,
    provider-executed results stay inline in the assistant message, local results go
    to the tool message. Empty messages are not emitted.
    """
    assistant: list[MessagePart] = []
    tool: list[MessagePart] = []
    for part in content:
        if isinstance(part, TextPart | ReasoningPart):
            if part.text.strip():
                assistant.append(part)
        elif isinstance(part, ToolResultPart):
            (assistant if part.provider_executed else tool).append(part)
        elif isinstance(part, ToolCallPart | FilePart):
            assistant.append(part)
        elif isinstance(part, SourcePart):
            continue
    messages = []
    if assistant:
        messages.append(Message(Role.ASSISTANT, assistant))
    if tool:
        messages.append(Message(Role.TOOL, tool))
    return messages


_EXACT_KEYS = frozenset(
    {
        "contextlimit",
        "contextwindow",
        "contextlength",
        "maxcontext",
        "maxcontexttokens",
        "maxinputtokens",
        "maxinputtoken",
        "inputtokenlimit",
    }
)
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def _is_context_limit_key(key: str) -> bool:
    if re.sub(r"[^a-z0-9]", "", key.lower()) in _EXACT_KEYS:
        return True
    words = {w.lower() for w in _WORDS.findall(key)}
    if "context" not in words:
        return False
    return (
        "limit" in words
        or ("window" in words and bool(words & {"size", "max"}))
        or ("length" in words and "max" in words)
        or (bool(words & {"token", "tokens"}) and bool(words & {"max", "limit"}))
    )


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float):
        return int(value) if value > 0 and value.is_integer() else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def find_context_limit(metadata: Any) -> int | None:
    """The largest positive integer under a context-limit-like key anywhere in `metadata`."""
    best: int | None = None
    stack = [metadata]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and _is_context_limit_key(key):
                    number = _positive_int(value)
                    if number is not None and (best is None or number > best):
                        best = number
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return best
