"""Child chats (sub-agents): listing them, and answering a parent's `wait_agent`.

A parent that calls `wait_agent` leaves its worker slot: its run ends in
`requires_action` with the call pending, like a client tool. The store answers
the call, whoever commits: the transition that settles a child (its turn ends,
fails or is interrupted) settles the parent's wait right after it commits, and
the deadline sweeper answers a wait whose time is up with what the children
have by then. The answer is one tool result: each awaited child's status and
final answer. Then the parent is pending again and any replica resumes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.core.agents import WAIT_AGENT, parse_wait
from chatd.store._base import StoreBase
from chatd.store._errors import NotFound, TransitionRejected
from chatd.store._models import Chat, ChatStatus
from chatd.store._schema import chat_messages, chats
from chatd.store._tx import CANCELLED_TOOL_RESULT, Tx, chat_from_row
from chatd.types import (
    MessagePart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
    ToolResultText,
)

__all__ = [
    "CHILD_BUSY",
    "ChildChats",
    "answer_waits",
    "interrupt_locked",
    "lock_busy_children",
    "read_children",
    "wait_calls",
    "wait_deadline",
]

# A child in one of these is still working; a wait for it is not over.
CHILD_BUSY = (ChatStatus.PENDING, ChatStatus.RUNNING, ChatStatus.INTERRUPTING)


def wait_calls(calls: Sequence[ToolCallPart]) -> list[ToolCallPart]:
    return [call for call in calls if call.tool_name == WAIT_AGENT]


def wait_deadline(tx: Tx, calls: Sequence[ToolCallPart]) -> Any:
    """When a `requires_action` with these pending calls ends: the longest wait's
    timeout, or the client deadline when client tools are pending too (the sooner)."""
    waits = wait_calls(calls)
    seconds = max((parse_wait(call.input).seconds for call in waits), default=0.0)
    if len(waits) < len(calls) or not waits:
        client = tx.config.requires_action_timeout
        seconds = min(seconds, client) if waits else client
    return tx.now + timedelta(seconds=max(seconds, 0.0))


async def read_children(conn: AsyncConnection, parent_id: str) -> list[Chat]:
    """The chats `parent_id` spawned, oldest first."""
    rows = (
        (
            await conn.execute(
                sa.select(chats)
                .where(chats.c.parent_id == parent_id)
                .order_by(chats.c.created_at, chats.c.id)
            )
        )
        .mappings()
        .all()
    )
    return [chat_from_row(row) for row in rows]


async def _final_answer(conn: AsyncConnection, chat_id: str) -> str:
    """The text of the child's newest assistant message ('' when it has none)."""
    m = chat_messages.c
    parts = await conn.scalar(
        sa.select(m.parts)
        .where(m.chat_id == chat_id, m.role == Role.ASSISTANT, m.kind.is_(None), ~m.deleted)
        .order_by(m.position.desc())
        .limit(1)
    )
    return "".join(p.text for p in parts or () if isinstance(p, TextPart)).strip()


async def _report(conn: AsyncConnection, child: Chat) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": child.id, "title": child.title, "status": child.status.value}
    if child.status == ChatStatus.ERROR:
        entry["error"] = (child.last_error or {}).get("message") or "The agent's turn failed."
    elif child.status not in CHILD_BUSY:
        entry["answer"] = await _final_answer(conn, child.id)
    return entry


async def answer_waits(tx: Tx, *, expired: bool) -> bool:
    """Answer the chat's pending `wait_agent` calls once every awaited child has
    settled (or at once when `expired`); True when an answer was appended."""
    pending = await tx.pending_tool_calls()
    waits = wait_calls(pending)
    if not waits:
        return False
    children = await read_children(tx.conn, tx.id)
    by_id = {child.id: child for child in children}
    plans = [(call, parse_wait(call.input)) for call in waits]
    if not expired:
        for _call, wait in plans:
            wanted = wait.ids if wait.ids is not None else tuple(by_id)
            if not wait.problem and any(
                i in by_id and by_id[i].status in CHILD_BUSY for i in wanted
            ):
                return False
    parts: list[MessagePart] = []
    for call, wait in plans:
        parts.append(
            ToolResultPart(
                tool_call_id=call.tool_call_id,
                tool_name=call.tool_name,
                output=await _wait_output(tx.conn, wait.problem, wait.ids, by_id, expired),
                created_at=tx.now,
            )
        )
    await tx.append_messages([{"role": Role.TOOL, "parts": parts}])
    if len(waits) < len(pending):  # client tools still pending: wait for their results
        client = timedelta(seconds=tx.config.requires_action_timeout)
        tx.set(requires_action_deadline_at=tx.now + client)
    else:
        tx.set(requires_action_deadline_at=None)
        tx.set_status(ChatStatus.PENDING)
    return True


async def _wait_output(
    conn: AsyncConnection,
    problem: str,
    ids: tuple[str, ...] | None,
    by_id: dict[str, Chat],
    expired: bool,
) -> ToolResultText | ToolResultError:
    if problem:
        return ToolResultError(problem)
    if not by_id:
        return ToolResultError(f"{WAIT_AGENT}: this chat has no agents; spawn_agent starts one.")
    agents = []
    for child_id in ids if ids is not None else tuple(by_id):
        child = by_id.get(child_id)
        if child is None:
            agents.append({"id": child_id, "error": "No agent of this chat has this id."})
        else:
            agents.append(await _report(conn, child))
    timed_out = expired and any(a.get("status") in CHILD_BUSY for a in agents)
    return ToolResultText(json.dumps({"agents": agents, "timed_out": timed_out}))


async def interrupt_locked(tx: Tx) -> Chat:
    """Interrupt the locked chat of `tx` (not interrupting already): a running one
    is told to stop; a pending or requires_action one stops here."""
    if tx.status == ChatStatus.RUNNING:
        tx.set_status(ChatStatus.INTERRUPTING)
    else:
        await tx.answer_pending_calls(CANCELLED_TOOL_RESULT)
        tx.set(requires_action_deadline_at=None)
        await tx.promote_head_or_wait()
    return await tx.save()


async def lock_busy_children(tx: Tx) -> list[Tx]:
    """Lock the chat's children that are working (or waiting for a client), each in
    a `Tx` of the parent's transaction; the parent's row is locked first."""
    c = chats.c
    busy = (ChatStatus.PENDING, ChatStatus.RUNNING, ChatStatus.REQUIRES_ACTION)
    ids = (
        await tx.conn.scalars(
            sa.select(c.id).where(c.parent_id == tx.id, c.status.in_(busy)).order_by(c.id)
        )
    ).all()
    locked = [await Tx.lock(tx.conn, i, "interrupt", tx.config, tx.now) for i in ids]
    return [child for child in locked if child.status in busy]


class ChildChats(StoreBase):
    async def list_children(self, parent_id: str) -> list[Chat]:
        """The chats `parent_id` spawned, oldest first."""
        async with self.db.read() as conn:
            return await read_children(conn, parent_id)

    async def child_reports(self, parent_id: str) -> list[dict[str, Any]]:
        """`list_agents`: each child's id, title, status and (when settled) answer."""
        async with self.db.read() as conn:
            return [await _report(conn, child) for child in await read_children(conn, parent_id)]

    async def resolve_agent_wait(self, parent_id: str, *, expired: bool = False) -> Chat | None:
        """Answer the parent's `wait_agent` if its children have settled; the new
        snapshot, or None when there was nothing to answer yet."""
        try:
            async with self._transition(parent_id, "resolve_agent_wait") as tx:
                if tx.status != ChatStatus.REQUIRES_ACTION or tx.archived:
                    return None
                if not await answer_waits(tx, expired=expired):
                    return None
                return await tx.save()
        except NotFound:
            return None  # the parent was deleted meanwhile

    async def resolve_stalled_waits(self, limit: int = 50) -> list[Chat]:
        """The sweeper's backstop: waiting parents with a settled child, answered if
        every awaited child has settled (a replica may die between a child's last
        commit and the parent's answer)."""
        p, c = chats.alias("p"), chats.c
        query = (
            sa.select(p.c.id)
            .where(
                p.c.status == ChatStatus.REQUIRES_ACTION,
                sa.exists().where(c.parent_id == p.c.id, c.status.notin_(CHILD_BUSY)),
            )
            .limit(limit)
        )
        async with self.db.read() as conn:
            waiting = (await conn.scalars(query)).all()
        resolved = []
        for parent_id in waiting:
            try:
                chat = await self.resolve_agent_wait(parent_id)
            except TransitionRejected:
                continue
            if chat is not None:
                resolved.append(chat)
        return resolved

    async def _child_committed(self, chat: Chat) -> None:
        if chat.status not in CHILD_BUSY and chat.parent_id is not None:
            await self.resolve_agent_wait(chat.parent_id)
