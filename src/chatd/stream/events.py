"""Which stream events a chat change produces (spec §5.1 "derived events", §5.2 payloads).

A chat row remembers what its stream already told watchers (`emitted_state`).
`derive_events` compares the current row (and the messages changed since) with
it and returns the missing events, in the spec's order, plus the new
`emitted_state`. Whoever holds seq authority — the owning runner, or the store
for an unowned chat — numbers and writes them. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chatd.core.agents import WAIT_AGENT
from chatd.store import Chat, ChatStatus, QueuedMessage, StoredMessage, Visibility
from chatd.stream.wire import message_json, queued_json, timestamp
from chatd.types import ToolCallPart, ToolResultPart

__all__ = [
    "EventDraft",
    "derive_events",
    "derive_unowned",
    "emitted_state_of",
    "pending_tool_calls",
]

EventDraft = tuple[str, dict[str, Any]]


def emitted_state_of(chat: Chat) -> dict[str, Any]:
    return {
        "history_version": chat.history_version,
        "history_reset_version": chat.history_reset_version,
        "queue_version": chat.queue_version,
        "status": str(chat.status),
        "archived": chat.archived,
        "retry_state_version": chat.retry_state_version,
        "generation_attempt": chat.generation_attempt,
        "title": chat.title,
    }


def pending_tool_calls(messages: Sequence[StoredMessage]) -> list[dict[str, Any]]:
    """Tool calls of the last assistant message that the client must answer: those
    with no result yet, but `wait_agent`, which the chat's agents answer."""
    answered = {p.tool_call_id for m in messages for p in m.parts if isinstance(p, ToolResultPart)}
    for message in reversed(messages):
        calls = [p for p in message.parts if isinstance(p, ToolCallPart)]
        if calls:
            return [
                {"tool_call_id": c.tool_call_id, "tool_name": c.tool_name, "args": c.input}
                for c in calls
                if c.tool_call_id not in answered
                and not c.provider_executed
                and c.tool_name != WAIT_AGENT
            ]
    return []


def derive_events(
    chat: Chat,
    emitted: dict[str, Any] | None,
    changed_messages: Sequence[StoredMessage],
    queue: Sequence[QueuedMessage] | None,
    *,
    requires_action_calls: Sequence[dict[str, Any]] = (),
) -> tuple[list[EventDraft], dict[str, Any]]:
    """The events that bring watchers from `emitted` to `chat`, and the new emitted state.

    `changed_messages` are the messages whose revision is above the emitted
    history version; `queue` is the current queue (needed when it changed).
    """
    old = emitted or {}
    events: list[EventDraft] = []
    new = emitted_state_of(chat)

    # 1. history: a reset when messages were removed from view, then the messages.
    changed = sorted(changed_messages, key=lambda m: m.position)
    if chat.history_reset_version > old.get("history_reset_version", 0):
        hidden = [m for m in changed if m.deleted or m.compressed]
        keep_through = min((m.position for m in hidden), default=None)
        reason = "edited" if any(m.deleted for m in hidden) else "cleared"
        events.append(
            (
                "history_reset",
                {
                    "reason": reason,
                    "keep_through_position": keep_through - 1 if keep_through else None,
                },
            )
        )
    for message in changed:
        if message.deleted or message.compressed or message.visibility == Visibility.MODEL:
            continue
        events.append(("message", {"message": message_json(message)}))

    # 2. queue
    if chat.queue_version != old.get("queue_version", 0) and queue is not None:
        events.append(("queue_update", {"queued_messages": [queued_json(q) for q in queue]}))

    # 3. status
    status_changed = new["status"] != old.get("status") or new["archived"] != old.get("archived")
    if status_changed:
        events.append(
            (
                "status",
                {
                    "status": new["status"],
                    "archived": chat.archived,
                    "snapshot_version": chat.snapshot_version,
                },
            )
        )
        # 4. error, 5. action_required: on reaching those statuses.
        if chat.status == ChatStatus.ERROR and chat.last_error:
            events.append(("error", dict(chat.last_error)))
        # (not while it waits only for its agents: the client has nothing to submit)
        if chat.status == ChatStatus.REQUIRES_ACTION and requires_action_calls:
            events.append(
                (
                    "action_required",
                    {
                        "tool_calls": list(requires_action_calls),
                        "deadline_at": timestamp(chat.requires_action_deadline_at),
                    },
                )
            )

    # 6. retry
    if chat.retry_state_version != old.get("retry_state_version", 0) and chat.retry_state:
        events.append(("retry", dict(chat.retry_state)))

    # 7. preview reset: a new attempt, or history moved under a running turn.
    attempt_changed = chat.generation_attempt != old.get("generation_attempt", 0)
    history_changed = chat.history_version != old.get("history_version", 0)
    if (attempt_changed and chat.generation_attempt) or (history_changed and emitted):
        events.append(
            (
                "preview_reset",
                {
                    "history_version": chat.history_version,
                    "generation_attempt": chat.generation_attempt,
                    "reason": "new_attempt",
                },
            )
        )

    # 8. title
    if emitted is not None and chat.title != old.get("title"):
        events.append(("title", {"title": chat.title}))
    return events, new


def derive_unowned(
    chat: Chat,
    emitted: dict[str, Any] | None,
    changed: list[Any],
    queue: list[Any] | None,
    history: list[Any],
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """`derive_events` for a chat no runner owns (the store's `sync_unowned_events`)."""
    calls = pending_tool_calls(history) if chat.status == ChatStatus.REQUIRES_ACTION else []
    return derive_events(chat, emitted, changed, queue, requires_action_calls=calls)
