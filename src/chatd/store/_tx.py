"""One transition's transaction: the locked chat row plus the row operations transitions share.

A `Tx` is made by locking the chat row (`SELECT … FOR UPDATE`; on SQLite the
enclosing `BEGIN IMMEDIATE` already excludes every other writer). Transitions
read the row from it, decide, call its helpers (append messages, queue changes,
synthetic tool results, lease release), and finish with `save()`, which writes
the chat row once and returns the new snapshot. The version rules of spec §2.3
live here, so no transition can forget them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store._errors import NotFound, RejectionKind, StaleFence, TransitionRejected
from chatd.store._ids import new_id
from chatd.store._models import (
    Chat,
    ChatStatus,
    QueuedMessage,
    StoredMessage,
    Visibility,
)
from chatd.store._schema import (
    chat_heartbeats,
    chat_messages,
    chat_queued_messages,
    chats,
    model_configs,
)
from chatd.types import (
    MessagePart,
    PersistedStep,
    ReasoningPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
)

__all__ = ["CANCELLED_TOOL_RESULT", "Fence", "StoreConfig", "Tx", "chat_from_row"]

# The loop's own text for a call that never produced a result (AL §2.10), so a
# call cancelled by the store reads the same as one cancelled inside a run.
CANCELLED_TOOL_RESULT = "tool call was interrupted before it produced a result"

_MESSAGE_DEFAULTS: dict[str, Any] = {
    column.name: None for column in chat_messages.columns if column.nullable
} | {"visibility": Visibility.BOTH, "compressed": False, "deleted": False}


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The store's tunables (spec §0.1); tests shorten the durations."""

    # 30 s: a lease not renewed for this long may be taken over (CHATD_LEASE_TTL).
    lease_ttl: float = 30.0
    # 300 s: how long a client has to post dynamic tool results (upstream's 5 min).
    requires_action_timeout: float = 300.0
    # 20 queued messages per chat (upstream, CHATD_MAX_QUEUED_MESSAGES).
    max_queued_messages: int = 20
    # 10,000 event seqs reserved per acquisition (spec §5.1).
    seq_block: int = 10_000


class Fence(msgspec.Struct, frozen=True):
    """What a worker write must still match: the runner and epoch won at acquisition."""

    chat_id: str
    runner_id: str
    lease_epoch: int


def chat_from_row(row: Any) -> Chat:
    values = dict(row)
    values["status"] = ChatStatus(values["status"])
    return Chat(**values)


def message_from_row(row: Any) -> StoredMessage:
    values = dict(row)
    values["role"] = Role(values["role"])
    values["visibility"] = Visibility(values["visibility"])
    return StoredMessage(**values)


def queued_from_row(row: Any) -> QueuedMessage:
    return QueuedMessage(**dict(row))


def split_step(step: PersistedStep) -> tuple[list[MessagePart], list[MessagePart]]:
    """A step's content as (assistant parts, local tool results), timestamps filled in.

    The same split as `chatd.loop.to_response_messages`, except that sources are
    kept for display (`load_history` leaves them out of the model's view).
    """
    assistant: list[MessagePart] = []
    tool: list[MessagePart] = []
    for part in step.content:
        if isinstance(part, TextPart | ReasoningPart):
            if part.text.strip():
                assistant.append(part)
        elif isinstance(part, ToolResultPart):
            if part.created_at is None and part.tool_call_id in step.tool_result_created_at:
                part = msgspec.structs.replace(
                    part, created_at=step.tool_result_created_at[part.tool_call_id]
                )
            (assistant if part.provider_executed else tool).append(part)
        elif isinstance(part, ToolCallPart):
            if part.created_at is None and part.tool_call_id in step.tool_call_created_at:
                part = msgspec.structs.replace(
                    part, created_at=step.tool_call_created_at[part.tool_call_id]
                )
            assistant.append(part)
        else:
            assistant.append(part)
    return assistant, tool


class Tx:
    """The locked chat row of one transition and the writes that go with it."""

    def __init__(
        self,
        conn: AsyncConnection,
        row: dict[str, Any],
        transition: str,
        config: StoreConfig,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.row = row
        self.id: str = row["id"]
        self.transition = transition
        self.config = config
        self.now = now
        self.changes: dict[str, Any] = {}
        self.saved: Chat | None = None
        self._bumped = False
        self._queue: list[QueuedMessage] | None = None
        self.step_exists = False
        # The newest stream event this transaction inserted (0: none).
        self.last_event_seq = 0

    @classmethod
    async def lock(
        cls,
        conn: AsyncConnection,
        chat_id: str,
        transition: str,
        config: StoreConfig,
        now: datetime,
        *,
        step_id: str | None = None,
    ) -> Tx:
        """Lock the chat row; with `step_id`, also learn whether that step is committed.

        Folding the step check into the locking query keeps `commit_step` at one
        read. On PostgreSQL the EXISTS sees the snapshot taken before a lock wait;
        the unique index on `(chat_id, step_id, role)` backs it up.
        """
        query = sa.select(chats)
        if step_id is not None:
            query = query.add_columns(
                sa.exists()
                .where(chat_messages.c.chat_id == chat_id, chat_messages.c.step_id == step_id)
                .label("step_exists")
            )
        row = (
            (await conn.execute(query.where(chats.c.id == chat_id).with_for_update()))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound("chat", chat_id)
        values = dict(row)
        step_exists = bool(values.pop("step_exists", False))
        tx = cls(conn, values, transition, config, now)
        tx.step_exists = step_exists
        return tx

    # --- reading the row ----------------------------------------------------------------

    @property
    def chat(self) -> Chat:
        return chat_from_row(self.row)

    @property
    def status(self) -> ChatStatus:
        return ChatStatus(self.row["status"])

    @property
    def archived(self) -> bool:
        return bool(self.row["archived"])

    @property
    def queue_length(self) -> int:
        return int(self.row["queue_length"])

    def reject(
        self, kind: RejectionKind = RejectionKind.INVALID_STATE, message: str | None = None
    ) -> TransitionRejected:
        return TransitionRejected(kind, self.chat, self.transition, message)

    def require(self, *statuses: ChatStatus) -> None:
        """The precondition of most transitions: not archived, status among `statuses`."""
        if self.archived or self.status not in statuses:
            raise self.reject()

    def check_fence(self, fence: Fence, expected_history_version: int | None = None) -> None:
        if self.row["runner_id"] != fence.runner_id or self.row["lease_epoch"] != fence.lease_epoch:
            raise StaleFence(self.chat, "the lease is held by another runner or was released")
        if (
            expected_history_version is not None
            and self.row["history_version"] != expected_history_version
        ):
            raise StaleFence(self.chat, "history changed since the run loaded it")

    # --- changing the row (spec §2.3) ---------------------------------------------------

    def set(self, **values: Any) -> None:
        self.row.update(values)
        self.changes.update(values)

    def bump(self) -> int:
        """`snapshot_version += 1`, once per transaction; returns the new value."""
        if not self._bumped:
            self._bumped = True
            self.set(snapshot_version=self.row["snapshot_version"] + 1)
        return int(self.row["snapshot_version"])

    def set_status(self, status: ChatStatus) -> None:
        self.bump()
        self.set(status=status)

    def history_changed(self, *, reset: bool = False) -> None:
        """History moved: history_version follows, the attempt count and retry state reset."""
        version = self.bump()
        self.set(history_version=version)
        if reset:
            self.set(history_reset_version=version)
        if self.row["generation_attempt"]:
            self.set(generation_attempt=0)
        self.clear_retry_state()

    def clear_retry_state(self) -> None:
        if self.row["retry_state"] is not None:
            self.set(retry_state=None, retry_state_version=self.bump())

    def record_instructions(self, sources: Sequence[str] | None) -> None:
        """Keep which instruction sources the run applied (None: leave them)."""
        if sources is not None and self.row["instructions"] != list(sources):
            self.set(instructions=list(sources))

    async def release_lease(self) -> None:
        """Clear ownership and delete the heartbeat row (spec §2.5)."""
        if self.row["worker_id"] is None and self.row["runner_id"] is None:
            return
        self.bump()
        self.set(worker_id=None, runner_id=None)
        await self.conn.execute(
            sa.delete(chat_heartbeats).where(chat_heartbeats.c.chat_id == self.id)
        )

    async def save(self, *, bump: bool = True) -> Chat:
        """Write the chat row once; the transaction commits when the caller's block ends."""
        if bump:
            self.bump()
        self.set(updated_at=self.now)
        await self.conn.execute(sa.update(chats).where(chats.c.id == self.id).values(self.changes))
        self.changes = {}
        self.saved = self.chat
        return self.saved

    # --- history --------------------------------------------------------------------------

    async def append_messages(self, specs: Sequence[dict[str, Any]]) -> list[StoredMessage]:
        """Insert messages after the last position; each spec needs `role` and `parts`."""
        if not specs:
            return []
        version = self.bump()
        position = int(self.row["last_position"])
        rows = []
        for spec in specs:
            position += 1
            rows.append(
                _MESSAGE_DEFAULTS
                | {
                    "id": new_id(),
                    "chat_id": self.id,
                    "position": position,
                    "revision": version,
                    "created_at": self.now,
                }
                | spec
            )
        await self.conn.execute(sa.insert(chat_messages), rows)
        self.set(last_position=position)
        self.history_changed()
        return [StoredMessage(**row) for row in rows]

    async def append_user_message(
        self,
        parts: list[MessagePart],
        *,
        created_by: str | None,
        model_config_id: str | None,
        request_key: str | None,
    ) -> StoredMessage:
        await self.answer_pending_calls(CANCELLED_TOOL_RESULT)
        if model_config_id is not None and await self._model_enabled(model_config_id):
            # The message's model becomes the chat's; a model disabled since the
            # message was queued falls back to the chat's current one (spec §2.7).
            self.set(model_config_id=model_config_id)
        [message] = await self.append_messages(
            [
                {
                    "role": Role.USER,
                    "parts": parts,
                    "created_by": created_by,
                    "model_config_id": model_config_id,
                    "request_key": request_key,
                }
            ]
        )
        return message

    async def _model_enabled(self, model_config_id: str) -> bool:
        enabled = await self.conn.scalar(
            sa.select(model_configs.c.enabled).where(model_configs.c.id == model_config_id)
        )
        return bool(enabled)

    async def append_step(
        self,
        step_id: str,
        step: PersistedStep,
        *,
        run_id: str | None,
        provider: str | None = None,
        model: str | None = None,
        model_config_id: str | None = None,
        cost_micros: int | None = None,
    ) -> list[StoredMessage]:
        """The assistant message (with usage) and the tool message of one step (spec §3.5)."""
        assistant, tool = split_step(step)
        common = {"step_id": step_id, "run_id": run_id}
        specs: list[dict[str, Any]] = []
        if assistant:
            usage = step.usage
            specs.append(
                common
                | {
                    "role": Role.ASSISTANT,
                    "parts": assistant,
                    "model_config_id": model_config_id,
                    "provider": provider,
                    "model": model,
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                    "reasoning_tokens": usage.reasoning_tokens,
                    "cache_creation_tokens": usage.cache_creation_tokens,
                    "cache_read_tokens": usage.cache_read_tokens,
                    "context_limit": step.context_limit,
                    "runtime_ms": round(step.runtime * 1000) if step.runtime > 0 else None,
                    "cost_micros": cost_micros,
                }
            )
        if tool:
            specs.append(common | {"role": Role.TOOL, "parts": tool})
        return await self.append_messages(specs)

    async def pending_tool_calls(self) -> list[ToolCallPart]:
        """Tool calls of the last assistant message that have no result yet.

        Only the newest step can hold unanswered calls (every transition that adds a
        user message answers them first), so this reads the tail, not the history.
        """
        if self.row["last_position"] == 0:
            return []
        m = chat_messages.c
        last_assistant = (
            sa.select(m.position)
            .where(m.chat_id == self.id, m.role == Role.ASSISTANT, ~m.deleted, m.kind.is_(None))
            .order_by(m.position.desc())
            .limit(1)
            .scalar_subquery()
        )
        rows = await self.conn.execute(
            sa.select(m.role, m.parts)
            .where(m.chat_id == self.id, m.position >= last_assistant, ~m.deleted)
            .order_by(m.position)
        )
        calls: dict[str, ToolCallPart] = {}
        answered: set[str] = set()
        for role, parts in rows:
            for part in parts:
                if isinstance(part, ToolCallPart) and role == Role.ASSISTANT:
                    if not part.provider_executed:
                        calls[part.tool_call_id] = part
                elif isinstance(part, ToolResultPart):
                    answered.add(part.tool_call_id)
        return [call for call_id, call in calls.items() if call_id not in answered]

    async def answer_pending_calls(self, text: str) -> list[ToolCallPart]:
        """Give every unanswered call an error result, so history is valid provider input."""
        calls = await self.pending_tool_calls()
        if calls:
            parts: list[MessagePart] = [
                ToolResultPart(
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    output=ToolResultError(text),
                    created_at=self.now,
                )
                for call in calls
            ]
            await self.append_messages([{"role": Role.TOOL, "parts": parts}])
        return calls

    # --- the queue (spec §2.7) ------------------------------------------------------------

    async def queue(self) -> list[QueuedMessage]:
        if self._queue is None:
            if self.queue_length == 0:
                self._queue = []
            else:
                q = chat_queued_messages.c
                rows = await self.conn.execute(
                    sa.select(chat_queued_messages).where(q.chat_id == self.id).order_by(q.position)
                )
                self._queue = [queued_from_row(row) for row in rows.mappings()]
        return self._queue

    def _queue_changed(self, queue: list[QueuedMessage]) -> None:
        self.set(queue_length=len(queue), queue_version=self.bump())

    async def enqueue(
        self,
        parts: list[MessagePart],
        *,
        head: bool = False,
        created_by: str | None,
        model_config_id: str | None,
        request_key: str | None,
    ) -> QueuedMessage:
        queue = await self.queue()
        if len(queue) >= self.config.max_queued_messages:
            raise self.reject(RejectionKind.QUEUE_FULL)
        position = 1
        if queue:  # the head is the lowest position (spec §2.7)
            position = queue[0].position - 1 if head else queue[-1].position + 1
        queued = QueuedMessage(
            id=new_id(),
            chat_id=self.id,
            position=position,
            parts=parts,
            model_config_id=model_config_id,
            created_by=created_by,
            request_key=request_key,
            created_at=self.now,
        )
        await self.conn.execute(
            sa.insert(chat_queued_messages).values(msgspec.structs.asdict(queued))
        )
        queue.insert(0 if head else len(queue), queued)
        self._queue_changed(queue)
        return queued

    async def find_queued(self, queued_id: str) -> QueuedMessage:
        for queued in await self.queue():
            if queued.id == queued_id:
                return queued
        raise NotFound("queued message", queued_id)

    async def dequeue(self, queued_id: str) -> QueuedMessage:
        queued = await self.find_queued(queued_id)
        queue = await self.queue()
        queue.remove(queued)
        await self.conn.execute(
            sa.delete(chat_queued_messages).where(chat_queued_messages.c.id == queued_id)
        )
        self._queue_changed(queue)
        return queued

    async def move_to_head(self, queued_id: str) -> None:
        queued = await self.find_queued(queued_id)
        queue = await self.queue()
        if queue[0] is queued:
            return
        moved = msgspec.structs.replace(queued, position=queue[0].position - 1)
        await self.conn.execute(
            sa.update(chat_queued_messages)
            .where(chat_queued_messages.c.id == queued_id)
            .values(position=moved.position)
        )
        queue.remove(queued)
        queue.insert(0, moved)
        self._queue_changed(queue)

    async def clear_queue(self) -> None:
        if self.queue_length:
            await self.conn.execute(
                sa.delete(chat_queued_messages).where(chat_queued_messages.c.chat_id == self.id)
            )
            self._queue = []
            self._queue_changed([])

    async def promote(self, queued_id: str) -> StoredMessage:
        """Move a queued message into history (answering unanswered calls first)."""
        queued = await self.dequeue(queued_id)
        return await self.append_user_message(
            queued.parts,
            created_by=queued.created_by,
            model_config_id=queued.model_config_id,
            request_key=queued.request_key,
        )

    async def promote_head_or_wait(self) -> None:
        """End of a turn: the queue head becomes the next turn, or the chat waits."""
        queue = await self.queue()
        if queue:
            await self.promote(queue[0].id)
            self.set_status(ChatStatus.PENDING)
        else:
            self.set_status(ChatStatus.WAITING)
