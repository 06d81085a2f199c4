"""Driving chats into states, and the invariants of spec §2.10 checked straight from the tables."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from chatd.loop import PersistedStep
from chatd.store import (
    BusyBehavior,
    Chat,
    ChatStatus,
    Fence,
    Lease,
    Store,
    new_id,
)
from chatd.store._schema import chat_heartbeats, chat_messages, chat_queued_messages, chats
from chatd.types import (
    MessagePart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolResultText,
    Usage,
)

# A user as a migration test inserts it: the columns every revision has, in raw SQL.
OLD_USER_ROW = sa.text(
    "INSERT INTO users (id, username, is_admin, created_at) "
    "VALUES ('u1', 'old', false, CURRENT_TIMESTAMP)"
)


def text(value: str) -> list[MessagePart]:
    return [TextPart(value)]


def fence(lease: Lease) -> Fence:
    return Fence(lease.chat.id, lease.runner_id, lease.lease_epoch)


def text_step(value: str = "answer") -> PersistedStep:
    return PersistedStep(content=[TextPart(value)], usage=Usage(input_tokens=3, output_tokens=2))


def tool_step(call_id: str = "call_1", name: str = "clock") -> PersistedStep:
    """A step that called a local tool and got its result."""
    return PersistedStep(
        content=[
            ToolCallPart(call_id, name, "{}"),
            ToolResultPart(call_id, name, ToolResultText("12:00")),
        ]
    )


def dynamic_step(*call_ids: str, name: str = "browser") -> PersistedStep:
    """A step whose calls the client must run (no results)."""
    return PersistedStep(content=[ToolCallPart(call_id, name, "{}") for call_id in call_ids])


async def new_chat(store: Store, message: str = "hello") -> tuple[str, Chat]:
    user = await store.create_user(f"u{new_id()[-12:]}")
    chat = await store.create_chat(user.id, text(message))
    return user.id, chat


async def acquire(store: Store, chat_id: str, worker: str = "w1") -> Fence:
    leases = await store.acquire_pending_chats(worker, limit=100)
    [lease] = [lease for lease in leases if lease.chat.id == chat_id]
    return fence(lease)


async def running_chat(store: Store, queued: int = 0) -> tuple[Chat, Fence]:
    """R0 (or R1 with `queued` messages), with one committed step."""
    _, chat = await new_chat(store)
    lease = await acquire(store, chat.id)
    chat = await store.commit_step(lease, new_id(), text_step())
    for index in range(queued):
        chat = (await store.send_message(chat.id, text(f"queued {index}"))).chat
    return chat, lease


async def waiting_chat(store: Store) -> Chat:
    _chat, lease = await running_chat(store)
    return await store.finish_turn(lease)


async def error_chat(store: Store, queued: int = 0) -> Chat:
    _chat, lease = await running_chat(store, queued)
    return await store.finish_error(lease, {"kind": "generic", "message": "boom"})


async def requires_action_chat(store: Store, queued: int = 0) -> tuple[Chat, Fence]:
    _, chat = await new_chat(store)
    lease = await acquire(store, chat.id)
    await store.commit_step(lease, new_id(), dynamic_step("dyn_1", "dyn_2"))
    for index in range(queued):
        await store.send_message(chat.id, text(f"queued {index}"))
    return await store.enter_requires_action(lease), lease


async def send(store: Store, chat_id: str, value: str, interrupt: bool = False) -> Chat:
    behavior = BusyBehavior.INTERRUPT if interrupt else BusyBehavior.QUEUE
    return (await store.send_message(chat_id, text(value), busy_behavior=behavior)).chat


# --- invariants -------------------------------------------------------------------------

_VALID_STATES = {
    "W",
    "P0",
    "P1",
    "R0",
    "R1",
    "I0",
    "I1",
    "A0",
    "A1",
    "E0",
    "E1",
    "XW",
    "XE0",
    "XE1",
}
_VERSIONS = (
    "snapshot_version",
    "history_version",
    "queue_version",
    "generation_attempt",
    "retry_state_version",
    "lease_epoch",
    "seq_reserved",
    "last_position",
)


@dataclass
class InvariantChecker:
    """Checks spec §2.10 after every transition; remembers versions to check monotonicity."""

    store: Store
    chat_id: str
    previous: dict[str, Any] = field(default_factory=dict)

    async def check(self) -> dict[str, Any]:
        async with self.store.db.read() as conn:
            row = (
                (await conn.execute(sa.select(chats).where(chats.c.id == self.chat_id)))
                .mappings()
                .one()
            )
            messages = (
                (
                    await conn.execute(
                        sa.select(chat_messages)
                        .where(chat_messages.c.chat_id == self.chat_id)
                        .order_by(chat_messages.c.position)
                    )
                )
                .mappings()
                .all()
            )
            queue = (
                (
                    await conn.execute(
                        sa.select(chat_queued_messages.c.position).where(
                            chat_queued_messages.c.chat_id == self.chat_id
                        )
                    )
                )
                .scalars()
                .all()
            )
            heartbeat = (
                (
                    await conn.execute(
                        sa.select(chat_heartbeats).where(chat_heartbeats.c.chat_id == self.chat_id)
                    )
                )
                .mappings()
                .first()
            )
        status = ChatStatus(row["status"])
        # one valid execution state (§2.2)
        state = _state(status, len(queue), row["archived"])
        assert state in _VALID_STATES, state
        assert row["queue_length"] == len(queue)
        assert len(set(queue)) == len(queue)
        # ownership (§2.2, §2.10): running ⇒ one lease holder; idle ⇒ none
        if status == ChatStatus.RUNNING:
            assert row["worker_id"] is not None and row["runner_id"] is not None
            assert heartbeat is not None and heartbeat["runner_id"] == row["runner_id"]
        if not status.is_busy or status in (ChatStatus.PENDING, ChatStatus.REQUIRES_ACTION):
            assert row["worker_id"] is None and row["runner_id"] is None, state
            assert heartbeat is None
        if row["runner_id"] is None:
            assert heartbeat is None
        assert (status == ChatStatus.REQUIRES_ACTION) == (
            row["requires_action_deadline_at"] is not None
        )
        # versions (§2.3)
        assert row["history_version"] <= row["snapshot_version"]
        assert row["queue_version"] <= row["snapshot_version"]
        history_moved = bool(self.previous) and (
            row["history_version"] != self.previous["history_version"]
        )
        for name in _VERSIONS:
            if name == "generation_attempt" and history_moved:
                assert row[name] == 0  # a new history starts a fresh attempt count
            else:
                assert row[name] >= self.previous.get(name, 0), name
        self.previous = {name: row[name] for name in _VERSIONS}
        # history: dense positions, each step once, valid provider input
        assert [m["position"] for m in messages] == list(range(1, len(messages) + 1))
        assert row["last_position"] == len(messages)
        steps = Counter((m["step_id"], m["role"]) for m in messages if m["step_id"] is not None)
        assert all(count == 1 for count in steps.values()), steps
        _check_tool_pairs([m for m in messages if not m["deleted"]])
        return dict(row)


def _state(status: ChatStatus, queued: int, archived: bool) -> str:
    letter = {
        ChatStatus.WAITING: "W",
        ChatStatus.PENDING: "P",
        ChatStatus.RUNNING: "R",
        ChatStatus.INTERRUPTING: "I",
        ChatStatus.REQUIRES_ACTION: "A",
        ChatStatus.ERROR: "E",
    }[status]
    if status != ChatStatus.WAITING:
        letter += "1" if queued else "0"
    elif queued:
        letter += "1"  # invalid: waiting with a queue
    return "X" + letter if archived else letter


def _check_tool_pairs(messages: list[Any]) -> None:
    """Every tool call has at most one result, and exactly one unless in the last step."""
    results = Counter(
        part.tool_call_id
        for m in messages
        for part in m["parts"]
        if isinstance(part, ToolResultPart)
    )
    assistants = [m for m in messages if m["role"] == Role.ASSISTANT]
    for m in assistants:
        last = m is assistants[-1]
        for part in m["parts"]:
            if isinstance(part, ToolCallPart) and not part.provider_executed:
                count = results[part.tool_call_id]
                assert count <= 1 if last else count == 1, (part.tool_call_id, count)
