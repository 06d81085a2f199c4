"""The transitions a worker applies (spec §2.5): acquire, renew, commit, finish, abandon.

Every write of a running chat takes the runner's `Fence` and checks it after
locking the row, so a runner that lost its lease (takeover, edit, abandon)
changes nothing: it gets `StaleFence` and stops. While the chat is
`interrupting`, writes that would continue the run raise `ChatIsInterrupting`
instead, which the loop treats as its interrupt.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from chatd.errors import ClassifiedError
from chatd.store._agents import answer_waits, wait_deadline
from chatd.store._base import StoreBase
from chatd.store._errors import ChatIsInterrupting, TransitionRejected
from chatd.store._ids import new_id
from chatd.store._models import (
    Acquisition,
    Capacity,
    Chat,
    ChatStatus,
    Lease,
    StreamEvent,
    Visibility,
)
from chatd.store._rows import driver_timestamp, event_rows, insert_event_rows
from chatd.store._schema import chat_heartbeats, chat_messages, chats
from chatd.store._tx import CANCELLED_TOOL_RESULT, Fence, Tx, chat_from_row
from chatd.types import PersistedStep, Role, TextPart, ToolCallPart, ToolResultPart, ToolResultText

__all__ = ["WorkerTransitions"]

DEADLINE_TOOL_RESULT = "The client did not return a result for this tool call before the deadline."
SUMMARIZED_TOOL = "chat_summarized"
_BUSY = (ChatStatus.RUNNING, ChatStatus.INTERRUPTING)
_KINDS = ("chat", "agent")
# The PostgreSQL advisory lock (pg_advisory_xact_lock) that orders capacity-limited claims.
_CAPACITY_LOCK = 0x63686174  # "chat"


def _kind(row: Mapping[str, Any]) -> str:
    return "chat" if row["parent_id"] is None else "agent"


def _aware(value: datetime) -> datetime:
    """A timestamp read back from SQLite is naive UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _require_running(tx: Tx, fence: Fence, expected_history_version: int | None = None) -> None:
    tx.check_fence(fence, expected_history_version)
    if tx.status == ChatStatus.INTERRUPTING:
        raise ChatIsInterrupting(tx.chat)
    tx.require(ChatStatus.RUNNING)


class WorkerTransitions(StoreBase):
    # --- leases ---------------------------------------------------------------------------

    async def acquire_pending_chats(self, worker_id: str, limit: int = 10) -> list[Lease]:
        """Claim up to `limit` runnable chats (no capacity limit); see `acquire_chats`."""
        return (await self.acquire_chats(worker_id, limit)).leases

    async def acquire_chats(
        self, worker_id: str, limit: int = 10, capacity: Capacity | None = None
    ) -> Acquisition:
        """Claim up to `limit` runnable chats: pending ones, and busy ones whose lease expired.

        `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never claim the same chat;
        on SQLite the `BEGIN IMMEDIATE` transaction excludes every other writer.
        pending → running; a taken-over running/interrupting chat keeps its status.
        Each claim also counts the runner's first generation attempt (and clears
        `retry_state`), so the first model call needs no transaction of its own.

        With a `capacity`, a pending chat is claimed only while the deployment runs
        fewer chats of its kind (top-level or sub-agent) than the limit; the others
        stay pending, oldest first. A taken-over chat is already counted, so it is
        always claimed. On PostgreSQL an advisory lock orders concurrent claims, so
        two replicas never both take the last slot.
        """
        if limit <= 0:
            return Acquisition(leases=[])
        now = self.clock()
        counts: dict[tuple[str, str], int] = {}
        async with self.db.write() as conn:
            if capacity is None or not capacity.limited:
                rows = await self._runnable(conn, now, limit)
            else:
                rows, counts = await self._runnable_within(conn, now, limit, capacity)
            leases = await self._claim(conn, worker_id, now, rows)
        for lease in leases:
            self._committed(lease.chat)
        claimed = dict.fromkeys(_KINDS, 0)
        waited = []
        for row in rows:
            if row["status"] == ChatStatus.PENDING:
                kind = _kind(row)
                claimed[kind] += 1
                waited.append((kind, max(0.0, (now - _aware(row["updated_at"])).total_seconds())))
        if capacity is None or not capacity.limited:
            return Acquisition(leases=leases, waited=waited)
        return Acquisition(
            leases=leases,
            running={k: counts.get((k, "busy"), 0) + claimed[k] for k in _KINDS},
            queued={k: counts.get((k, "pending"), 0) - claimed[k] for k in _KINDS},
            waited=waited,
        )

    def _runnable_query(self, *conditions: Any) -> Any:
        c, h = chats.c, chat_heartbeats.c
        return (
            sa.select(chats)
            .select_from(chats.outerjoin(chat_heartbeats, h.chat_id == c.id))
            .where(~c.archived, *conditions)
            .order_by(c.updated_at, c.id)  # ids are time-ordered (UUIDv7)
            .with_for_update(of=chats, skip_locked=True)
        )

    def _expired(self, now: Any) -> Any:
        c, h = chats.c, chat_heartbeats.c
        return sa.and_(c.status.in_(_BUSY), sa.or_(h.chat_id.is_(None), h.expires_at < now))

    async def _runnable(self, conn: Any, now: Any, limit: int) -> list[dict[str, Any]]:
        query = self._runnable_query(
            sa.or_(chats.c.status == ChatStatus.PENDING, self._expired(now))
        ).limit(limit)
        return [dict(row) for row in (await conn.execute(query)).mappings()]

    async def _runnable_within(
        self, conn: Any, now: Any, limit: int, capacity: Capacity
    ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
        """The runnable rows `capacity` admits, and the deployment's counts before the
        claim: (kind, "busy" | "pending") → chats."""
        c = chats.c
        if not self.db.is_sqlite:
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CAPACITY_LOCK)))
        kind = sa.case((c.parent_id.is_(None), "chat"), else_="agent")
        state = sa.case((c.status == ChatStatus.PENDING, "pending"), else_="busy")
        counted = await conn.execute(
            sa.select(kind, state, sa.func.count())
            .where(~c.archived, c.status.in_((ChatStatus.PENDING, *_BUSY)))
            .group_by(kind, state)
        )
        counts = {(k, st): int(n) for k, st, n in counted}
        rows = [
            dict(row)
            for row in (
                await conn.execute(self._runnable_query(self._expired(now)).limit(limit))
            ).mappings()
        ]
        for name, top_level in (("chat", True), ("agent", False)):
            ceiling = capacity.chats if top_level else capacity.agents
            room = limit - len(rows)
            if ceiling > 0:
                room = min(room, ceiling - counts.get((name, "busy"), 0))
            if room <= 0:
                continue
            query = self._runnable_query(
                c.status == ChatStatus.PENDING,
                c.parent_id.is_(None) if top_level else c.parent_id.is_not(None),
            ).limit(room)
            rows += [dict(row) for row in (await conn.execute(query)).mappings()]
        return rows, counts

    async def _claim(
        self, conn: Any, worker_id: str, now: Any, rows: list[dict[str, Any]]
    ) -> list[Lease]:
        """Lease `rows` to `worker_id`: pending → running, new runner and epoch,
        a block of seqs, the first attempt counted, and a fresh heartbeat."""
        if not rows:
            return []
        h = chat_heartbeats.c
        expires_at = now + timedelta(seconds=self.config.lease_ttl)
        leases: list[Lease] = []
        updates = []
        for found in rows:
            row = dict(found)
            first_seq = row["seq_reserved"] + 1
            row.update(
                status=(
                    ChatStatus.RUNNING if row["status"] == ChatStatus.PENDING else row["status"]
                ),
                worker_id=worker_id,
                runner_id=new_id(),
                lease_epoch=row["lease_epoch"] + 1,
                snapshot_version=row["snapshot_version"] + 1,
                seq_reserved=row["seq_reserved"] + self.config.seq_block,
                updated_at=now,
            )
            # The runner's first model call is attempt +1: recorded here, in the
            # claim's own transaction (what `record_generation_attempt` would do).
            row["generation_attempt"] += 1
            if row["retry_state"] is not None:
                row.update(retry_state=None, retry_state_version=row["snapshot_version"])
            updates.append(row)
            leases.append(
                Lease(
                    chat=chat_from_row(row),
                    runner_id=row["runner_id"],
                    lease_epoch=row["lease_epoch"],
                    first_seq=first_seq,
                )
            )
        names = (
            "status",
            "worker_id",
            "runner_id",
            "lease_epoch",
            "snapshot_version",
            "seq_reserved",
            "updated_at",
            "generation_attempt",
            "retry_state",
            "retry_state_version",
        )
        await conn.execute(
            sa.update(chats)
            .where(chats.c.id == sa.bindparam("b_id"))
            .values({name: sa.bindparam(f"b_{name}") for name in names}),
            [{"b_id": row["id"]} | {f"b_{n}": row[n] for n in names} for row in updates],
        )
        claimed = [row["id"] for row in updates]
        await conn.execute(sa.delete(chat_heartbeats).where(h.chat_id.in_(claimed)))
        await conn.execute(
            sa.insert(chat_heartbeats),
            [
                {
                    "chat_id": row["id"],
                    "runner_id": row["runner_id"],
                    "worker_id": worker_id,
                    "heartbeat_at": now,
                    "expires_at": expires_at,
                }
                for row in updates
            ],
        )
        return leases

    async def renew_leases(self, worker_id: str, runner_ids: Collection[str]) -> set[str]:
        """Extend this worker's leases in one statement; returns the runner ids still held.

        Touches only `chat_heartbeats`, never the chat rows (no contention, no versions).
        """
        if not runner_ids:
            return set()
        now = self.clock()
        h = chat_heartbeats.c
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(chat_heartbeats)
                .where(h.worker_id == worker_id, h.runner_id.in_(list(runner_ids)))
                .values(heartbeat_at=now, expires_at=now + timedelta(seconds=self.config.lease_ttl))
                .returning(h.runner_id)
            )
            return set(result.scalars())

    async def delete_expired_heartbeats(self) -> int:
        """Housekeeping: drop heartbeat rows expired for longer than a lease TTL."""
        cutoff = self.clock() - timedelta(seconds=self.config.lease_ttl)
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.delete(chat_heartbeats).where(chat_heartbeats.c.expires_at < cutoff)
            )
            return int(result.rowcount)

    async def abandon(self, fence: Fence) -> Chat:
        """R → P, I stays I: give the chat back (graceful shutdown)."""
        async with self._transition(fence.chat_id, "abandon") as tx:
            tx.check_fence(fence)
            tx.require(*_BUSY)
            await tx.release_lease()
            if tx.status == ChatStatus.RUNNING:
                tx.set_status(ChatStatus.PENDING)
            return await tx.save()

    # --- during a run ---------------------------------------------------------------------

    async def record_generation_attempt(self, fence: Fence) -> Chat:
        """R → R: `generation_attempt += 1` before each model call; clears `retry_state`."""
        async with self._transition(fence.chat_id, "record_generation_attempt") as tx:
            _require_running(tx, fence)
            tx.bump()
            tx.set(generation_attempt=tx.row["generation_attempt"] + 1)
            tx.clear_retry_state()
            return await tx.save()

    async def record_retry_state(self, fence: Fence, payload: Mapping[str, Any]) -> Chat:
        """R → R: the retry countdown the API shows (the `retry` event payload)."""
        async with self._transition(fence.chat_id, "record_retry_state") as tx:
            _require_running(tx, fence)
            tx.set(retry_state=dict(payload), retry_state_version=tx.bump())
            return await tx.save()

    async def commit_step(
        self,
        fence: Fence,
        step_id: str,
        step: PersistedStep,
        *,
        expected_history_version: int | None = None,
        model_config_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        cost_micros: int | None = None,
        instructions: Sequence[str] | None = None,
        events: Sequence[StreamEvent] = (),
    ) -> Chat:
        """R → R: insert one step's assistant and tool messages (spec §3.5).

        Writes only the new rows and the chat row, so its cost does not grow with
        history. A `step_id` already committed returns the snapshot unchanged
        (a retry after an ambiguous commit never duplicates a step). `events` are
        the owner's unflushed stream events, written in the same transaction;
        `instructions`, the sources the run joined into its system prompt, are kept
        on the chat row.
        """
        async with self._transition(fence.chat_id, "commit_step", step_id=step_id) as tx:
            if tx.step_exists:
                return tx.chat
            _require_running(tx, fence, expected_history_version)
            if await tx.pending_tool_calls():
                # The previous step waits for tool results (the runner should have
                # entered requires_action): another step now would leave history
                # that no provider accepts (spec §2.10).
                raise tx.reject(message="the previous step's tool calls have no results yet")
            await tx.append_step(
                step_id,
                step,
                run_id=fence.runner_id,
                provider=provider,
                model=model,
                model_config_id=model_config_id,
                cost_micros=cost_micros,
            )
            tx.record_instructions(instructions)
            await _insert_events(tx, events)
            return await tx.save()

    async def commit_compaction(
        self, fence: Fence, system_summary: str, *, summary: str = ""
    ) -> Chat:
        """R → R: hide everything so far behind a compaction summary (AL §5).

        Marks every visible message (except the system prompt) compressed, appends
        the summary as a model-only system message plus a visible `chat_summarized`
        note, and clears `compaction_requested_at`.
        """
        async with self._transition(fence.chat_id, "commit_compaction") as tx:
            _require_running(tx, fence)
            await tx.answer_pending_calls(CANCELLED_TOOL_RESULT)
            version = tx.bump()
            m = chat_messages.c
            await tx.conn.execute(
                sa.update(chat_messages)
                .where(
                    m.chat_id == fence.chat_id,
                    ~m.compressed,
                    ~m.deleted,
                    sa.or_(m.kind.is_(None), m.kind != "system_prompt"),
                )
                .values(compressed=True, revision=version)
            )
            call_id = f"summary_{version}"
            added = await tx.append_messages(
                [
                    {
                        "role": Role.SYSTEM,
                        "kind": "summary",
                        "visibility": Visibility.MODEL,
                        "parts": [TextPart(system_summary)],
                    },
                    {
                        "role": Role.ASSISTANT,
                        "kind": "boundary",
                        "visibility": Visibility.USER,
                        "parts": [ToolCallPart(call_id, SUMMARIZED_TOOL, "{}", created_at=tx.now)],
                    },
                    {
                        "role": Role.TOOL,
                        "kind": "boundary",
                        "visibility": Visibility.USER,
                        "parts": [
                            ToolResultPart(
                                call_id,
                                SUMMARIZED_TOOL,
                                ToolResultText(summary or system_summary),
                                created_at=tx.now,
                            )
                        ],
                    },
                ]
            )
            tx.set(boundary_position=added[-1].position, compaction_requested_at=None)
            tx.history_changed(reset=True)
            return await tx.save()

    async def append_events(
        self,
        fence: Fence,
        events: Sequence[StreamEvent],
        *,
        emitted_state: Mapping[str, Any] | None = None,
    ) -> Chat:
        """The owner's flush of stream events to the durable log (spec §5.1).

        Refused with `StaleFence` once the runner lost the chat, so a stale owner's
        late flush is discarded rather than written out of order. Raises
        `seq_reserved` by another block when the owner gets within half a block of it.
        """
        async with self._transition(fence.chat_id, "append_events") as tx:
            tx.check_fence(fence)
            await _insert_events(tx, events)
            if emitted_state is not None:
                tx.set(emitted_state=dict(emitted_state))
            return await tx.save(bump=False)

    # --- how a turn ends ------------------------------------------------------------------

    async def enter_requires_action(self, fence: Fence) -> Chat:
        """R0 → A0, R1 → A1: the last step waits for client tool results until a deadline."""
        async with self._transition(fence.chat_id, "enter_requires_action") as tx:
            _require_running(tx, fence)
            pending = await tx.pending_tool_calls()
            if not pending:
                raise tx.reject(message="The last step has no pending client tool calls.")
            await tx.release_lease()
            tx.set(requires_action_deadline_at=wait_deadline(tx, pending))
            tx.set_status(ChatStatus.REQUIRES_ACTION)
            # A `wait_agent` whose children have all settled is answered at once.
            await answer_waits(tx, expired=False)
            return await tx.save()

    async def finish_interruption(
        self,
        fence: Fence,
        partial_step: PersistedStep | None = None,
        *,
        step_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        model_config_id: str | None = None,
        cost_micros: int | None = None,
        instructions: Sequence[str] | None = None,
    ) -> Chat:
        """I0 → W, I1 → P: commit the partial step, cancel unanswered calls, next message."""
        async with self._transition(fence.chat_id, "finish_interruption", step_id=step_id) as tx:
            tx.check_fence(fence)
            tx.require(ChatStatus.INTERRUPTING)
            if partial_step is not None and not tx.step_exists:
                await tx.append_step(
                    step_id or new_id(),
                    partial_step,
                    run_id=fence.runner_id,
                    provider=provider,
                    model=model,
                    model_config_id=model_config_id,
                    cost_micros=cost_micros,
                )
                tx.record_instructions(instructions)
            await tx.answer_pending_calls(CANCELLED_TOOL_RESULT)
            await tx.release_lease()
            tx.clear_retry_state()
            tx.set(compaction_requested_at=None)
            await tx.promote_head_or_wait()
            return await tx.save()

    async def finish_turn(self, fence: Fence) -> Chat:
        """R0 → W, R1 → P (the queue head becomes the next turn)."""
        async with self._transition(fence.chat_id, "finish_turn") as tx:
            _require_running(tx, fence)
            await tx.release_lease()
            tx.clear_retry_state()
            tx.set(compaction_requested_at=None)
            await tx.promote_head_or_wait()
            return await tx.save()

    async def finish_error(self, fence: Fence, error: ClassifiedError | Mapping[str, Any]) -> Chat:
        """R → E, I → E: the turn failed for good; `last_error` says why."""
        async with self._transition(fence.chat_id, "finish_error") as tx:
            tx.check_fence(fence)
            tx.require(*_BUSY)
            payload = error.to_dict() if isinstance(error, ClassifiedError) else dict(error)
            await tx.release_lease()
            tx.clear_retry_state()
            tx.set(last_error=payload, compaction_requested_at=None)
            tx.set_status(ChatStatus.ERROR)
            return await tx.save()

    async def cancel_requires_action(self, chat_id: str, *, only_if_expired: bool = False) -> Chat:
        """A0 → E0, A1 → E1: the deadline passed; the pending calls get error results."""
        async with self._transition(chat_id, "cancel_requires_action") as tx:
            tx.require(ChatStatus.REQUIRES_ACTION)
            deadline = tx.row["requires_action_deadline_at"]
            if only_if_expired and deadline is not None and deadline > tx.now:
                raise tx.reject(message="The requires_action deadline has not passed yet.")
            if await answer_waits(tx, expired=True):
                # A `wait_agent` ran out of time: it answers with the children's
                # status so far and the turn goes on (or waits for client results).
                return await tx.save()
            await tx.answer_pending_calls(DEADLINE_TOOL_RESULT)
            minutes = max(round(self.config.requires_action_timeout / 60), 1)
            error = ClassifiedError(
                kind="requires_action_timeout",
                message=(
                    "No result was submitted for the client tools within "
                    f"{minutes} minute{'s' if minutes != 1 else ''}; send a message to continue."
                ),
            )
            tx.set(last_error=error.to_dict(), requires_action_deadline_at=None)
            tx.set_status(ChatStatus.ERROR)
            return await tx.save()

    async def expire_requires_action(self, limit: int = 50) -> list[Chat]:
        """The deadline sweeper (spec §4.7): cancel every requires_action chat past due."""
        c = chats.c
        async with self.db.read() as conn:
            due = (
                await conn.scalars(
                    sa.select(c.id)
                    .where(
                        c.status == ChatStatus.REQUIRES_ACTION,
                        c.requires_action_deadline_at <= self.clock(),
                    )
                    .order_by(c.requires_action_deadline_at)
                    .limit(limit)
                )
            ).all()
        expired = []
        for chat_id in due:
            try:
                expired.append(await self.cancel_requires_action(chat_id, only_if_expired=True))
            except TransitionRejected:
                continue  # completed, interrupted or expired by another replica meanwhile
        return expired


async def _insert_events(tx: Tx, events: Sequence[StreamEvent]) -> None:
    if not events:
        return
    await insert_event_rows(tx.conn, event_rows(tx.id, events, driver_timestamp(tx.conn, tx.now)))
    block = tx.config.seq_block
    tx.last_event_seq = max(event.seq for event in events)
    if tx.last_event_seq > tx.row["seq_reserved"] - block // 2:
        tx.set(seq_reserved=tx.row["seq_reserved"] + block)
