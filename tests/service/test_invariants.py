"""Random sequences of API calls against a live replica never leave a chat stuck running.

Hypothesis drives the real service over real HTTP (scripted models, short lease TTL):
create chats, send (queue or interrupt), interrupt, edit, compact, clear, delete,
try to create broken model configs and use one an older chatd stored. After every
step the worker gets up to one lease TTL; by then no chat may be pending, and every
busy chat (running or interrupting) must be held by a live owner: a runner of the
worker that is still running, whose lease has not expired. (A turn of the `slow`
model outlives that TTL, so later steps queue, interrupt and edit while it runs.)
A turn started on the broken config must end in `error` with kind `config` in the
acquisition that claimed it (its lease epoch one above the epoch before the send),
never be claimed again. On the code before this test it found both the chat stuck
`running` on a broken config and a turn whose closing transition met an interrupt
(`ChatIsInterrupting`), left `interrupting` until its lease expired.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chatd.store import ChatStatus
from chatd.store._schema import chat_heartbeats, chats
from tests.service.conftest import LiveReplica, running_replica

T = TypeVar("T")
# Long enough that a loaded machine (the test client shares the loop) never lets a
# healthy lease lapse; waits end as soon as the chats settle, so it costs nothing.
LEASE_TTL = 3.0
BROKEN = "broken"
MODELS = (None, "fast", "paced", "slow", BROKEN)
SETTLING = (ChatStatus.PENDING, ChatStatus.RUNNING, ChatStatus.INTERRUPTING)
# Options the scripted provider cannot build a model from: the API refuses each (422).
BAD_OPTIONS = (
    {"script": [{"error": {"code": 500}}]},
    {"script": [{"tool_calls": "echo"}]},
    {"delta_delay": "fast"},
    {"temperature": 1},
)
chat_index = st.integers(min_value=0, max_value=50)


class ServiceMachine(RuleBasedStateMachine):
    """One example = a few chats of one user on a replica shared by the whole run."""

    loop: asyncio.AbstractEventLoop
    live: LiveReplica
    client: httpx.AsyncClient
    admin: httpx.AsyncClient

    def __init__(self) -> None:
        super().__init__()
        self.chat_ids: list[str] = []
        self.words = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = self.run(self.client.request(method, path, json=body))
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) >= {"kind", "message", "detail"}
        return response

    def pick(self, index: int) -> str:
        return self.chat_ids[index % len(self.chat_ids)]

    def text(self) -> str:
        self.words += 1
        return f"message {self.words}"

    # --- rules ------------------------------------------------------------------------

    @rule(model=st.sampled_from(MODELS))
    def create_chat(self, model: str | None) -> None:
        body: dict[str, Any] = {"message": self.text()}
        if model is not None:
            body["model"] = model
        created = self.call("POST", "/api/chats", body)
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        self.chat_ids.append(chat_id)
        if model == BROKEN:
            self.expect_config_error(chat_id, epoch_before=0)

    @precondition(lambda self: self.chat_ids)
    @rule(
        index=chat_index,
        model=st.sampled_from(MODELS),
        behavior=st.sampled_from(("queue", "interrupt")),
    )
    def send(self, index: int, model: str | None, behavior: str) -> None:
        chat_id = self.pick(index)
        before = self.run(self.live.store.get_chat(chat_id))
        body: dict[str, Any] = {"message": self.text(), "busy_behavior": behavior}
        if model is not None:
            body["model"] = model
        sent = self.call("POST", f"/api/chats/{chat_id}/messages", body)
        idle = before.status in (ChatStatus.WAITING, ChatStatus.ERROR) and not before.queue_length
        if sent.status_code == 200 and model == BROKEN and idle:
            self.expect_config_error(chat_id, epoch_before=before.lease_epoch)

    @precondition(lambda self: self.chat_ids)
    @rule(index=chat_index)
    def interrupt(self, index: int) -> None:
        self.call("POST", f"/api/chats/{self.pick(index)}/interrupt")

    @precondition(lambda self: self.chat_ids)
    @rule(index=chat_index)
    def edit_first_message(self, index: int) -> None:
        chat_id = self.pick(index)
        messages = self.call("GET", f"/api/chats/{chat_id}/messages").json()["messages"]
        users = [m for m in messages if m["role"] == "user"]
        if users:
            path = f"/api/chats/{chat_id}/messages/{users[0]['id']}"
            self.call("PATCH", path, {"message": self.text()})

    @precondition(lambda self: self.chat_ids)
    @rule(index=chat_index)
    def compact(self, index: int) -> None:
        self.call("POST", f"/api/chats/{self.pick(index)}/compact")

    @precondition(lambda self: self.chat_ids)
    @rule(index=chat_index)
    def clear(self, index: int) -> None:
        self.call("POST", f"/api/chats/{self.pick(index)}/clear")

    @precondition(lambda self: self.chat_ids)
    @rule(index=chat_index)
    def delete(self, index: int) -> None:
        chat_id = self.pick(index)
        if self.call("DELETE", f"/api/chats/{chat_id}").status_code == 204:
            self.chat_ids.remove(chat_id)

    @rule(options=st.sampled_from(BAD_OPTIONS))
    def create_broken_config(self, options: dict[str, Any]) -> None:
        body = {"name": "refused", "provider": "scripted", "model": "x", "options": options}
        refused = self.run(self.admin.post("/api/chats/model-configs", json=body))
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["fields"][0]["loc"][:2] == ["body", "options"]

    # --- checks -----------------------------------------------------------------------

    def expect_config_error(self, chat_id: str, *, epoch_before: int) -> None:
        async def read() -> Any:
            return await self.live.store.get_chat(chat_id)

        chat = self.run(self._poll(read, lambda chat: chat.status not in SETTLING))
        assert chat.status == ChatStatus.ERROR, (chat.status, chat.last_error)
        assert chat.last_error is not None and chat.last_error["kind"] == "config"
        assert chat.lease_epoch == epoch_before + 1, "ended in the acquisition that claimed it"

    async def _poll(self, probe: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
        """Let the worker run until one look at `probe()` is `done`, for one lease TTL at
        most; the last look. (One look, not a second read after it: a turn may end
        between two reads.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEASE_TTL
        while not done(seen := await probe()) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the worker writes the rows: nothing to wait on
        return seen

    async def _unowned(self) -> list[dict[str, Any]]:
        """This example's chats that are pending, or busy without a live owner: a runner
        of the worker still running that holds an unexpired lease."""
        c, h = chats.c, chat_heartbeats.c
        query = (
            sa.select(c.id, c.status, c.runner_id, h.runner_id.label("lease_runner"), h.expires_at)
            .select_from(chats.outerjoin(chat_heartbeats, h.chat_id == c.id))
            .where(c.status.in_(SETTLING), c.id.in_(self.chat_ids))
        )
        async with self.live.store.db.read() as conn:
            rows = [dict(row) for row in (await conn.execute(query)).mappings()]
        now = datetime.now(UTC)
        running = {
            runner.fence.runner_id
            for runner in self.live.replica.worker.runners.values()
            if runner.task is not None and not runner.task.done()
        }
        return [
            row
            for row in rows
            if row["status"] == ChatStatus.PENDING
            or row["runner_id"] not in running
            or row["lease_runner"] != row["runner_id"]
            or row["expires_at"] <= now
        ]

    def teardown(self) -> None:
        """The next example starts with no chat of this one that can still be deleted."""
        for chat_id in self.chat_ids:
            self.run(self.client.delete(f"/api/chats/{chat_id}"))

    @invariant()
    def no_chat_is_busy_without_a_live_owner(self) -> None:
        stuck = self.run(self._poll(self._unowned, lambda rows: not rows))
        assert not stuck, f"pending or busy with no live owner after one lease TTL: {stuck}"
        for chat in self.run(self.live.store.get_chats(self.chat_ids)):
            kind = (chat.last_error or {}).get("kind")
            assert kind != "internal", f"chat {chat.id} failed inside chatd (see the log)"


def test_random_api_sequences_leave_no_chat_stuck_running(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()

    async def start(stack: contextlib.AsyncExitStack) -> None:
        overrides = {"lease_ttl": LEASE_TTL, "acquire_max_lag": 0.0, "generate_titles": False}
        live = await stack.enter_async_context(running_replica(tmp_path, **overrides))
        await live.scripted_model("fast", script=[{"text": "done"}])
        await live.scripted_model("paced", delta_delay=0.01, script=[{"text": "w " * 30}])
        # Longer than a lease TTL: later steps queue, interrupt and edit while it runs.
        await live.scripted_model("slow", delta_delay=0.02, script=[{"text": "w " * 200}])
        # Stored by an older chatd, before options were validated: it cannot be built.
        await live.scripted_model(BROKEN, script=[{"error": {"code": 500}}])
        ServiceMachine.live = live
        ServiceMachine.client = await stack.enter_async_context(
            live.client(await live.token("fuzzer"))
        )
        ServiceMachine.admin = await stack.enter_async_context(
            live.client(await live.token("fuzz-admin", admin=True))
        )

    stack = contextlib.AsyncExitStack()
    ServiceMachine.loop = loop
    try:
        loop.run_until_complete(start(stack))
        run_state_machine_as_test(
            ServiceMachine,
            settings=settings(
                max_examples=30,
                stateful_step_count=20,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
