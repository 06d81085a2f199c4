"""The JSON shapes clients see: chats, messages, parts and queued messages (spec §6.3).

One place turns store snapshots into wire dicts, for the HTTP responses and for the
`message`/`queue_update` stream events alike, so both always agree.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chatd.store import Chat, QueuedMessage, StoredMessage
from chatd.types import (
    FilePart,
    MessagePart,
    ReasoningPart,
    SourcePart,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
)

__all__ = [
    "chat_json",
    "live_part",
    "message_json",
    "part_json",
    "queued_json",
    "timestamp",
]


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds and a Z (spec §0)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _args(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw


def part_json(part: MessagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ReasoningPart):
        return {"type": "reasoning", "text": part.text}
    if isinstance(part, FilePart):
        # An uploaded file is named by id (its bytes: GET /api/chats/files/{id});
        # only a file that never was uploaded carries its bytes inline.
        body = {"type": "file", "name": part.filename, "media_type": part.media_type}
        if part.file_id:
            return {**body, "file_id": part.file_id}
        return {**body, "data": base64.b64encode(part.data).decode("ascii")}
    if isinstance(part, SourcePart):
        return {
            "type": "source",
            "source_type": part.source_type,
            "url": part.url,
            "title": part.title,
        }
    if isinstance(part, ToolCallPart):
        return {
            "type": "tool_call",
            "tool_call_id": part.tool_call_id,
            "tool_name": part.tool_name,
            "args": _args(part.input),
            "provider_executed": part.provider_executed,
        }
    output = part.output
    result: dict[str, Any] | None
    if isinstance(output, ToolResultText):
        result = {"type": "text", "text": output.text}
    elif isinstance(output, ToolResultError):
        result = {"type": "error", "error": output.error or ""}
    elif isinstance(output, ToolResultMedia):
        result = {
            "type": "media",
            "data": output.data,
            "media_type": output.media_type,
            "text": output.text,
        }
    else:
        result = None
    assert isinstance(part, ToolResultPart)
    view: dict[str, Any] = {
        "type": "tool_result",
        "tool_call_id": part.tool_call_id,
        "tool_name": part.tool_name,
        "result": result,
        "provider_executed": part.provider_executed,
    }
    if part.provider_executed:
        view["sources"] = _sources(part.provider_metadata.get("sources"))
    return view


def _sources(value: object) -> list[dict[str, str]]:
    """A provider-executed result's sources (the pages a web search found), each
    `{"url", "title"}`; the adapters put them in its provider metadata."""
    if not isinstance(value, list):
        return []
    return [
        {"url": str(s["url"]), "title": str(s.get("title") or "")}
        for s in value
        if isinstance(s, dict) and s.get("url")
    ]


def message_json(m: StoredMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": m.id,
        "chat_id": m.chat_id,
        "position": m.position,
        "role": str(m.role),
        "kind": m.kind,
        "parts": [part_json(p) for p in m.parts],
        "model": m.model,
        "step_id": m.step_id,
        "usage": {
            "input_tokens": m.input_tokens or 0,
            "output_tokens": m.output_tokens or 0,
            "total_tokens": m.total_tokens or 0,
            "reasoning_tokens": m.reasoning_tokens or 0,
            "cache_creation_tokens": m.cache_creation_tokens or 0,
            "cache_read_tokens": m.cache_read_tokens or 0,
            "context_limit": m.context_limit,
            "runtime_ms": m.runtime_ms,
            "cost_micros": m.cost_micros,
        },
        "created_by": m.created_by,
        "created_at": timestamp(m.created_at),
        "revision": m.revision,
    }
    if m.compressed or m.deleted:
        body["hidden"] = "deleted" if m.deleted else "compressed"
    return body


def queued_json(q: QueuedMessage) -> dict[str, Any]:
    return {
        "id": q.id,
        "position": q.position,
        "parts": [part_json(p) for p in q.parts],
        "model_config_id": q.model_config_id,
        "created_by": q.created_by,
        "created_at": timestamp(q.created_at),
    }


def chat_json(
    chat: Chat,
    *,
    queue: Sequence[QueuedMessage] | None = None,
    model: str | None = None,
    last_seq: int | None = None,
    requires_action: dict[str, Any] | None = None,
    usage: dict[str, int | None] | None = None,
    children: Sequence[Chat] | None = None,
) -> dict[str, Any]:
    """A chat; with `queue` the full resource, without it the list summary. The full
    resource lists the chat's `children` (sub-agents) with their live status."""
    body: dict[str, Any] = {
        "id": chat.id,
        "owner_id": chat.owner_id,
        "title": chat.title,
        "status": str(chat.status),
        "archived": chat.archived,
        "model": model,
        "model_config_id": chat.model_config_id,
        "tools": chat.tool_config,
        "mode": chat.mode,
        "parent_id": chat.parent_id,
        "instructions": chat.instructions,
        "last_error": chat.last_error,
        "retry_state": chat.retry_state,
        "requires_action": requires_action,
        "snapshot_version": chat.snapshot_version,
        "history_version": chat.history_version,
        "last_seq": last_seq if last_seq is not None else chat.seq_reserved,
        "created_at": timestamp(chat.created_at),
        "updated_at": timestamp(chat.updated_at),
    }
    if queue is None:
        body["queue_length"] = chat.queue_length
    else:
        body["queued_messages"] = [queued_json(q) for q in queue]
        body["children"] = [
            {"id": c.id, "title": c.title, "status": str(c.status)} for c in children or ()
        ]
    if usage is not None:
        body["usage"] = usage
    return body


def live_part(part: MessagePart) -> dict[str, Any]:
    """A published part in the stream's snake_case form (spec §5.2 `message_part`)."""
    if isinstance(part, TextPart):
        return {"type": "text_delta", "delta": part.text}
    if isinstance(part, ReasoningPart):
        return {"type": "reasoning_delta", "delta": part.text}
    if isinstance(part, ToolCallPart) and part.args_delta:
        return {
            "type": "tool_input_delta",
            "tool_call_id": part.tool_call_id,
            "tool_name": part.tool_name,
            "delta": part.args_delta,
        }
    if isinstance(part, ToolResultPart):
        body = part_json(part)
        body["is_error"] = part.is_error
        return body
    if isinstance(part, ToolCallPart | SourcePart):
        return part_json(part)
    return part_json(part)
