"""Random sequences of user and worker transitions keep the invariants of spec §2.10.

Hypothesis drives one chat through any mix of API transitions (send, edit, queue
edits, interrupt, tool results, compaction, clear, archive) and worker ones
(acquire, commit, retries, requires_action, finish, abandon, lease expiry and
takeover, deadline expiry, stale runners), on both engines. After every step:
one valid status, versions only increase, queue order kept, every committed step
present exactly once, every sent message present exactly once (unless an edit or
a delete removed it), and a running chat has exactly one lease holder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from chatd.store import (
    BusyBehavior,
    ChatIsInterrupting,
    ChatStatus,
    Fence,
    InvalidRequest,
    NotFound,
    StaleFence,
    Store,
    TransitionRejected,
    new_id,
)
from chatd.store._schema import chat_messages, chat_queued_messages
from chatd.store.testing import FakeClock
from chatd.types import Role, ToolCallPart, ToolResultPart, ToolResultText
from tests.store.conftest import Backend
from tests.store.helpers import (
    InvariantChecker,
    dynamic_step,
    fence,
    new_chat,
    text,
    text_step,
    tool_step,
)

T = TypeVar("T")
REFUSALS = (TransitionRejected, StaleFence, ChatIsInterrupting, NotFound, InvalidRequest)


class ChatMachine(RuleBasedStateMachine):
    """One example = one new chat in a store shared by the whole run (one loop, one engine)."""

    loop: asyncio.AbstractEventLoop
    store: Store
    clock: FakeClock

    def __init__(self) -> None:
        super().__init__()
        _, chat = self.run(new_chat(self.store))
        self.chat_id = chat.id
        self.checker = InvariantChecker(self.store, chat.id)
        self.fences: list[Fence] = []
        self.committed: list[str] = []
        self.last_step: tuple[Fence, str, Any] | None = None
        self.sent: set[str] = set()
        self.dropped: set[str] = set()
        self.queue: list[str] = []
        self.reordered = False
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def attempt(self, coro: Coroutine[Any, Any, T]) -> T | None:
        try:
            return self.run(coro)
        except REFUSALS:
            return None

    def fence(self, stale: bool) -> Fence | None:
        if not self.fences:
            return None
        return self.fences[0] if stale else self.fences[-1]

    async def _queue_keys(self) -> list[str]:
        return [q.request_key or "" for q in await self.store.list_queued_messages(self.chat_id)]

    # --- user transitions -------------------------------------------------------------

    @rule(interrupt=st.booleans())
    def send(self, interrupt: bool) -> None:
        self.counter += 1
        key = f"k{self.counter}"
        behavior = BusyBehavior.INTERRUPT if interrupt else BusyBehavior.QUEUE
        result = self.attempt(
            self.store.send_message(
                self.chat_id, text(key), busy_behavior=behavior, request_key=key
            )
        )
        if result is not None:
            self.sent.add(key)

    @rule()
    def send_again(self) -> None:
        if self.sent:
            key = sorted(self.sent)[-1]
            self.attempt(self.store.send_message(self.chat_id, text(key), request_key=key))

    @rule(index=st.integers(0, 5))
    def edit(self, index: int) -> None:
        users = [m for m in self.run(self.store.list_messages(self.chat_id)) if m.role == Role.USER]
        if not users:
            return
        queued = self.run(self._queue_keys())
        target = users[index % len(users)]
        if self.attempt(self.store.edit_message(self.chat_id, target.id, text("edit"))):
            self.dropped.update(queued)

    @rule(index=st.integers(0, 5))
    def delete_queued(self, index: int) -> None:
        queue = self.run(self.store.list_queued_messages(self.chat_id))
        if queue:
            target = queue[index % len(queue)]
            if self.attempt(self.store.delete_queued_message(self.chat_id, target.id)):
                self.dropped.add(target.request_key or "")

    @rule(index=st.integers(0, 5))
    def promote_queued(self, index: int) -> None:
        queue = self.run(self.store.list_queued_messages(self.chat_id))
        if queue:
            target = queue[index % len(queue)]
            if self.attempt(self.store.promote_queued_message(self.chat_id, target.id)):
                self.reordered = True

    @rule()
    def interrupt(self) -> None:
        self.attempt(self.store.interrupt(self.chat_id))

    @rule()
    def complete_requires_action(self) -> None:
        messages = self.run(self.store.list_messages(self.chat_id))
        calls = [
            p.tool_call_id
            for m in messages[-1:]
            if m.role == Role.ASSISTANT
            for p in m.parts
            if isinstance(p, ToolCallPart)
        ]
        results = [ToolResultPart(c, "browser", ToolResultText("ok")) for c in calls]
        self.attempt(self.store.complete_requires_action(self.chat_id, results))

    @rule()
    def request_compaction(self) -> None:
        self.attempt(self.store.request_compaction(self.chat_id))

    @rule()
    def clear_context(self) -> None:
        self.attempt(self.store.clear_context(self.chat_id))

    @rule(archived=st.booleans())
    def set_archived(self, archived: bool) -> None:
        self.attempt(self.store.set_archived(self.chat_id, archived))

    # --- worker transitions -----------------------------------------------------------

    @rule(worker=st.sampled_from(["w1", "w2"]))
    def acquire(self, worker: str) -> None:
        # Earlier examples' chats may be pending too: claim enough to reach this one.
        for lease in self.run(self.store.acquire_pending_chats(worker, limit=1000)):
            if lease.chat.id == self.chat_id:
                self.fences.append(fence(lease))

    @rule(kind=st.sampled_from(["text", "tool", "dynamic"]), stale=st.booleans())
    def commit_step(self, kind: str, stale: bool) -> None:
        lease = self.fence(stale)
        if lease is None:
            return
        self.counter += 1
        step = {
            "text": text_step(),
            "tool": tool_step(f"t{self.counter}"),
            "dynamic": dynamic_step(f"d{self.counter}"),
        }[kind]
        step_id = new_id()
        if self.attempt(self.store.commit_step(lease, step_id, step)) is not None:
            self.committed.append(step_id)
            self.last_step = (lease, step_id, step)

    @rule()
    def recommit_last_step(self) -> None:
        if self.last_step is not None:
            self.attempt(self.store.commit_step(*self.last_step))

    @rule()
    def record_attempt_and_retry(self) -> None:
        lease = self.fence(False)
        if lease is not None and self.attempt(self.store.record_generation_attempt(lease)):
            self.attempt(self.store.record_retry_state(lease, {"attempt": 1}))

    @rule(stale=st.booleans())
    def enter_requires_action(self, stale: bool) -> None:
        lease = self.fence(stale)
        if lease is not None:
            self.attempt(self.store.enter_requires_action(lease))

    @rule(stale=st.booleans())
    def finish_turn(self, stale: bool) -> None:
        lease = self.fence(stale)
        if lease is not None:
            self.attempt(self.store.finish_turn(lease))

    @rule(partial=st.booleans())
    def finish_interruption(self, partial: bool) -> None:
        lease = self.fence(False)
        if lease is None:
            return
        self.counter += 1
        step = dynamic_step(f"p{self.counter}") if partial else None
        step_id = new_id()
        finished = self.attempt(self.store.finish_interruption(lease, step, step_id=step_id))
        if finished is not None and partial:
            self.committed.append(step_id)

    @rule()
    def finish_error(self) -> None:
        lease = self.fence(False)
        if lease is not None:
            self.attempt(self.store.finish_error(lease, {"kind": "generic", "message": "x"}))

    @rule()
    def abandon(self) -> None:
        lease = self.fence(False)
        if lease is not None:
            self.attempt(self.store.abandon(lease))

    @rule()
    def lease_expires(self) -> None:
        self.clock.advance(self.store.config.lease_ttl + 1)

    @rule()
    def deadline_passes(self) -> None:
        self.clock.advance(self.store.config.requires_action_timeout + 1)
        self.run(self.store.expire_requires_action())

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        row = self.run(self.checker.check())
        status = ChatStatus(row["status"])
        if status == ChatStatus.RUNNING:  # the one lease holder is the latest claim
            assert self.fences and row["runner_id"] == self.fences[-1].runner_id
        step_ids, message_keys, queue_keys = self.run(self._keys())
        for step_id in self.committed:  # never lost (duplicates: see the checker)
            assert step_id in step_ids
        for key in self.sent:
            count = message_keys.count(key) + queue_keys.count(key)
            assert count <= 1, key
            assert key in self.dropped or count == 1, key
        kept = [key for key in queue_keys if key in self.queue]
        before = [key for key in self.queue if key in queue_keys]
        if not self.reordered:
            assert kept == before
        self.queue = queue_keys
        self.reordered = False

    async def _keys(self) -> tuple[set[str], list[str], list[str]]:
        m, q = chat_messages.c, chat_queued_messages.c
        async with self.store.db.read() as conn:
            steps = set(
                (
                    await conn.scalars(
                        sa.select(m.step_id).where(
                            m.chat_id == self.chat_id, m.step_id.is_not(None)
                        )
                    )
                ).all()
            )
            message_keys = list(
                (
                    await conn.scalars(
                        sa.select(m.request_key).where(
                            m.chat_id == self.chat_id, m.request_key.is_not(None)
                        )
                    )
                ).all()
            )
            queue_keys = list(
                (
                    await conn.scalars(
                        sa.select(q.request_key)
                        .where(q.chat_id == self.chat_id)
                        .order_by(q.position)
                    )
                ).all()
            )
        return (
            {s for s in steps if s},
            [k for k in message_keys if k],
            [k or "" for k in queue_keys],
        )


def test_random_transition_sequences_keep_the_invariants(backend: Backend) -> None:
    loop = asyncio.new_event_loop()
    clock = FakeClock()
    store = loop.run_until_complete(backend.new_store(clock))
    machine = type("Machine", (ChatMachine,), {"loop": loop, "store": store, "clock": clock})
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=30,
                stateful_step_count=25,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        # Bounded: after a timeout mid-example a connection may still be checked out,
        # and an unbounded close would then hang the whole run.
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(store.close(), 30))
        loop.close()


def test_machine_rules_cover_every_transition() -> None:
    transitions = {
        "send_message": "send",
        "edit_message": "edit",
        "delete_queued_message": "delete_queued",
        "promote_queued_message": "promote_queued",
        "interrupt": "interrupt",
        "complete_requires_action": "complete_requires_action",
        "request_compaction": "request_compaction",
        "clear_context": "clear_context",
        "set_archived": "set_archived",
        "acquire_pending_chats": "acquire",
        "commit_step": "commit_step",
        "record_generation_attempt": "record_attempt_and_retry",
        "enter_requires_action": "enter_requires_action",
        "finish_turn": "finish_turn",
        "finish_interruption": "finish_interruption",
        "finish_error": "finish_error",
        "abandon": "abandon",
        "cancel_requires_action": "deadline_passes",
    }
    for name, rule_name in transitions.items():
        assert hasattr(Store, name)
        assert hasattr(getattr(ChatMachine, rule_name), "hypothesis_stateful_rule")
