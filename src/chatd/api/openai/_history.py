"""A conversation a client sends whole (Responses `input` items, chat completions
`messages`) as a new chat: its system prompt, the history before the turn, and the
user message that starts the turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatd.api.errors import ApiError
from chatd.api.openai._bodies import ContentPart
from chatd.api.schemas import MAX_MESSAGE_BYTES
from chatd.types import MessagePart, Role, TextPart, ToolCallPart, ToolResultPart, ToolResultText

__all__ = ["Turn", "content_text", "history_of", "message_item"]

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def content_text(content: str | Sequence[ContentPart] | None) -> str:
    """A message's content as one text (its parts joined), checked like chatd's messages."""
    text = content if isinstance(content, str) else "".join(p.text for p in content or ())
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise _bad(f"A message must be at most {MAX_MESSAGE_BYTES} bytes.")
    return text


def message_item(item_id: str, role: str, content: str | Sequence[ContentPart]) -> dict[str, Any]:
    """A message as the Responses API lists an input item (its text must not be empty)."""
    text = content_text(content)
    if not text.strip():
        raise _bad("A message must not be empty.")
    kind = "output_text" if role == "assistant" else "input_text"
    part: dict[str, Any] = {"type": kind, "text": text}
    if role == "assistant":
        part["annotations"] = []
    return {
        "id": item_id,
        "type": "message",
        "role": role,
        "content": [part],
        "status": "completed",
    }


@dataclass(frozen=True, slots=True)
class Turn:
    system_prompt: str | None
    prior: list[tuple[Role, list[MessagePart]]]
    message: list[MessagePart]


def history_of(items: Sequence[dict[str, Any]], instructions: str | None) -> Turn:
    """`items` (normalized input items: message, function_call, function_call_output)
    as a new chat's turn. System and developer messages join `instructions`; the last
    item must be a user message; every function call needs its output and back."""
    system = [instructions] if instructions else []
    prior: list[tuple[Role, list[MessagePart]]] = []
    calls: set[str] = set()
    for item in items[:-1]:
        part: MessagePart
        if item["type"] == "message" and item["role"] not in _ROLES:
            system.append(item["content"][0]["text"])
            continue
        if item["type"] == "message":
            role, part = _ROLES[item["role"]], TextPart(item["content"][0]["text"])
        elif item["type"] == "function_call":
            calls.add(item["call_id"])
            role = Role.ASSISTANT
            part = ToolCallPart(item["call_id"], item["name"], item["arguments"])
        else:
            if item["call_id"] not in calls:
                raise _bad(f"function_call_output {item['call_id']!r} has no function_call.")
            calls.discard(item["call_id"])
            role = Role.TOOL
            part = ToolResultPart(item["call_id"], output=ToolResultText(item["output"]))
        if prior and prior[-1][0] == role:
            prior[-1][1].append(part)
        else:
            prior.append((role, [part]))
    if calls:
        raise _bad(f"Function calls without a function_call_output: {', '.join(sorted(calls))}.")
    last = items[-1]
    if last["type"] != "message" or last["role"] != "user":
        raise _bad("A new conversation ends with a user message.")
    return Turn("\n\n".join(system) or None, prior, [TextPart(last["content"][0]["text"])])
