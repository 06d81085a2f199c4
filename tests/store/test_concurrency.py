"""50 concurrent tasks hammering send / interrupt / commit on one chat (both engines).

The row lock (PostgreSQL) or the single writer (SQLite) must serialise them so
that no message is lost or duplicated and the chat never enters an invalid state.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from chatd.store import (
    BusyBehavior,
    ChatIsInterrupting,
    ChatStatus,
    Fence,
    RejectionKind,
    StaleFence,
    Store,
    TransitionRejected,
    new_id,
)
from tests.store.helpers import InvariantChecker, fence, new_chat, text, text_step

SENDERS, INTERRUPTERS, WORKERS = 25, 10, 15


async def _work_once(store: Store, worker: str, committed: list[str]) -> None:
    """One acquisition: commit a step, then end the turn the way the status asks."""
    for lease in await store.acquire_pending_chats(worker):
        held: Fence = fence(lease)
        try:
            if lease.chat.status == ChatStatus.RUNNING:
                step_id = new_id()
                await store.commit_step(held, step_id, text_step(worker))
                committed.append(step_id)
                await asyncio.sleep(0)
                await store.finish_turn(held)
            else:
                await store.finish_interruption(held)
        except ChatIsInterrupting:
            await store.finish_interruption(held)
        except (StaleFence, TransitionRejected):
            continue  # another task changed the chat first: an expected outcome of the race


async def test_fifty_concurrent_tasks_lose_no_message(store: Store) -> None:
    _, chat = await new_chat(store)
    checker = InvariantChecker(store, chat.id)
    committed: list[str] = []
    rng = random.Random(6)

    async def sender(index: int) -> None:
        behavior = BusyBehavior.INTERRUPT if index % 3 == 0 else BusyBehavior.QUEUE
        while True:
            try:
                await store.send_message(
                    chat.id, text(f"m{index}"), busy_behavior=behavior, request_key=f"k{index}"
                )
                return
            except TransitionRejected as err:
                assert err.kind == RejectionKind.QUEUE_FULL
                await asyncio.sleep(0.01)

    async def interrupter() -> None:
        for _ in range(3):
            with contextlib.suppress(TransitionRejected):
                await store.interrupt(chat.id)
            await asyncio.sleep(rng.random() / 100)

    async def worker(index: int) -> None:
        for _ in range(4):
            await _work_once(store, f"w{index}", committed)
            await asyncio.sleep(rng.random() / 100)

    async with asyncio.TaskGroup() as group:
        for index in range(SENDERS):
            group.create_task(sender(index))
        for _ in range(INTERRUPTERS):
            group.create_task(interrupter())
        for index in range(WORKERS):
            group.create_task(worker(index))
    await checker.check()

    for _ in range(200):  # drain: run every queued message to the end
        current = await store.get_chat(chat.id)
        if current.status in (ChatStatus.WAITING, ChatStatus.ERROR) and not current.queue_length:
            break
        await _work_once(store, "drain", committed)
    final = await store.get_chat(chat.id)
    assert final.state == "W"
    await checker.check()

    messages = await store.list_messages(chat.id)
    keys = [m.request_key for m in messages if m.request_key]
    assert sorted(keys) == sorted(f"k{index}" for index in range(SENDERS))  # each exactly once
    steps = [m.step_id for m in messages if m.step_id]
    assert sorted(steps) == sorted(committed)
