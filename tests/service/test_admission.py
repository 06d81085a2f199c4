"""Admission: a replica whose event loop lags or is too busy claims no new chats until
it recovers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from chatd.worker.admission import claim_limit
from tests.service.conftest import SSE, running_replica, turn_done

# Low, so the hog below (which slows every request too) can stay short.
LIMIT = 0.03


@contextlib.asynccontextmanager
async def loaded_loop(work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Run `work` (a load on the event loop) in the background for the block."""
    task = asyncio.create_task(work())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def blocking(block: float = 0.05) -> None:
    """Every turn of the event loop blocks for `block` seconds: timers run late."""
    while True:
        time.sleep(block)  # noqa: ASYNC251 - a stand-in for CPU-bound work on the loop
        await asyncio.sleep(0)


async def busy(share: float = 0.85) -> None:
    """The event loop's thread computes `share` of the time, in short slices: timers
    stay on time."""
    while True:
        start = time.thread_time()
        while time.thread_time() - start < 0.01:
            continue
        await asyncio.sleep(0.01 * (1 - share) / share)


async def pending_for_a_second(worker: Any, chat_id: str) -> None:
    """Five acquisition ticks pass without the replica claiming the chat."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert chat_id not in worker.runners
        await asyncio.sleep(0.05)


async def test_a_lagging_replica_leaves_new_chats_pending_until_it_recovers(
    tmp_path: Path,
) -> None:
    async with running_replica(tmp_path, acquire_max_lag=LIMIT) as live:
        worker = live.replica.worker
        token = await live.token("busy")
        async with live.client(token) as client:
            async with loaded_loop(blocking):
                while worker.loop_lag <= LIMIT:  # noqa: ASYNC110 - sampled by the worker
                    await asyncio.sleep(0)
                created = await client.post("/api/chats", json={"message": "hello"})
                assert created.status_code == 201, created.text
                chat_id = created.json()["id"]
                await pending_for_a_second(worker, chat_id)
                chat = (await client.get(f"/api/chats/{chat_id}")).json()
                assert chat["status"] == "pending"
            events = await SSE(client, f"/api/chats/{chat_id}/stream").read_until(turn_done)
            # Claimed once the lag fell back under the limit, and run to its end.
            assert events[-1][2]["status"] == "waiting"


async def test_a_replica_whose_loop_is_too_busy_leaves_new_chats_pending(
    tmp_path: Path,
) -> None:
    # Timers stay on time (short slices): only the busy share stops the claims.
    async with running_replica(tmp_path, acquire_max_lag=0, acquire_max_busy=0.6) as live:
        worker = live.replica.worker
        token = await live.token("busy")
        async with live.client(token) as client:
            async with loaded_loop(busy):
                async with asyncio.timeout(10):
                    while worker.loop_busy <= 0.6:  # noqa: ASYNC110 - sampled by the worker
                        await asyncio.sleep(0.05)
                created = await client.post("/api/chats", json={"message": "hello"})
                await pending_for_a_second(worker, created.json()["id"])
                chat_id = created.json()["id"]
            events = await SSE(client, f"/api/chats/{chat_id}/stream").read_until(turn_done)
            assert events[-1][2]["status"] == "waiting"


async def test_admission_can_be_turned_off(tmp_path: Path) -> None:
    async with running_replica(tmp_path, acquire_max_lag=0) as live:
        worker = live.replica.worker
        token = await live.token("busy")
        async with live.client(token) as client:
            async with loaded_loop(blocking):
                while worker.loop_lag <= LIMIT:  # noqa: ASYNC110 - sampled by the worker
                    await asyncio.sleep(0)
                chat_id = (await client.post("/api/chats", json={"message": "hi"})).json()["id"]
                async with asyncio.timeout(10):
                    while chat_id not in worker.runners:  # noqa: ASYNC110
                        await asyncio.sleep(0)
            events = await SSE(client, f"/api/chats/{chat_id}/stream").read_until(turn_done)
            assert events[-1][2]["status"] == "waiting"


def test_claims_are_priced_by_the_running_chats_share_so_the_busy_limit_is_not_overshot() -> None:
    # 100 chats use 0.4 of a core: 0.004 each, and 0.4 more fits 100 more chats.
    assert claim_limit(200, busy=0.4, max_busy=0.8, running=100, unmeasured=0) == 100
    assert claim_limit(50, busy=0.4, max_busy=0.8, running=100, unmeasured=0) == 50
    # 60 claimed within the busy window are not in the measure yet: they take room.
    assert claim_limit(200, busy=0.4, max_busy=0.8, running=160, unmeasured=60) == 100 - 60
    assert claim_limit(200, busy=0.4, max_busy=0.8, running=200, unmeasured=120) == 0
    # At or over the limit, nothing; below it with nothing unmeasured, at least one
    # (a loop busy with API calls, not chats, still takes chats, one at a time).
    assert claim_limit(200, busy=0.8, max_busy=0.8, running=100, unmeasured=0) == 0
    assert claim_limit(200, busy=0.9, max_busy=0.8, running=100, unmeasured=0) == 0
    assert claim_limit(10, busy=0.6, max_busy=0.8, running=1, unmeasured=0) == 1
    # Off, or nothing to price a chat by: the whole batch.
    assert claim_limit(200, busy=0.9, max_busy=0.0, running=100, unmeasured=0) == 200
    assert claim_limit(10, busy=0.3, max_busy=0.8, running=0, unmeasured=0) == 10
