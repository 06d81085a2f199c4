"""Step commit and incremental history load: cost against history length, both engines.

Workload (DESIGN.md: commit <= 1.5 ms SQLite / <= 3 ms PostgreSQL median, and a
3,000-message chat within 1.5x (or +0.5 ms) of a 10-message chat):
- chats are prepared with 10, 1,000 and 3,000 prior messages (tool steps: an
  assistant message plus a tool message each), held by one worker;
- each round commits one tool step (assistant + tool message, what a worker hands
  `commit_step`) to every chat, lengths interleaved so drift hits all alike, then
  loads what is new with `load_history(after_position=...)`;
- medians over the rounds, in ms.

SQLite runs as chatd runs it (WAL, synchronous=NORMAL: no fsync per commit).
PostgreSQL is a throwaway cluster with server defaults (fsync, synchronous_commit
on), reached over a unix socket.

Run: `make bench` (or `.venv/bin/python -m benchmarks.store_commit [rounds]`).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._store_floor import PostgresFloor, SqliteFloor
from chatd.loop import PersistedStep
from chatd.store import Fence, Store, new_id
from chatd.store.testing import SUPERUSER, TemporaryPostgres
from chatd.types import TextPart, ToolCallPart, ToolResultPart, ToolResultText, Usage

LENGTHS = (10, 1_000, 3_000)
ROUNDS = 200
BARE = "bare"
VS_BARE = 3.0  # a step commit at most 3x the bare driver's same statements (issue 20)
LOAD_TARGET_MS = 0.3  # an incremental load that finds the new step
Floor = SqliteFloor | PostgresFloor


def _step(n: int) -> PersistedStep:
    call_id = f"call_{n}"
    return PersistedStep(
        content=[
            TextPart("Checking the time."),
            ToolCallPart(call_id, "clock", '{"tz": "UTC"}'),
            ToolResultPart(call_id, "clock", ToolResultText("12:00")),
        ],
        usage=Usage(input_tokens=120, output_tokens=12, total_tokens=132),
        context_limit=128_000,
        runtime=0.4,
    )


async def _prepare(store: Store, length: int, name: str = "") -> tuple[Fence, int]:
    user = await store.create_user(name or f"bench{length}")
    chat = await store.create_chat(user.id, [TextPart("hello")])
    [lease] = [
        lease
        for lease in await store.acquire_pending_chats("bench", limit=10)
        if lease.chat.id == chat.id
    ]
    fence = Fence(chat.id, lease.runner_id, lease.lease_epoch)
    for n in range((length - 1) // 2):
        await store.commit_step(fence, new_id(), _step(n))
    if (length - 1) % 2:
        await store.commit_step(fence, new_id(), PersistedStep(content=[TextPart("ok")]))
    history = await store.load_history(chat.id)
    assert history.last_position == length, history.last_position
    return fence, history.last_position


async def _measure(
    url: str, data_dir: Path, rounds: int, floor: Floor
) -> dict[int | str, tuple[float, float]]:
    store = await Store.open(url, data_dir=data_dir)
    await floor.open()
    try:
        bare_fence, bare_position = await _prepare(store, LENGTHS[0], "bare")
        chats = {length: await _prepare(store, length) for length in LENGTHS}
        commit: dict[int | str, list[float]] = {length: [] for length in (*LENGTHS, BARE)}
        load: dict[int | str, list[float]] = {length: [] for length in (*LENGTHS, BARE)}
        gc.collect()
        for n in range(rounds):
            # The bare driver's same two statements' worth, on a 10-message chat of its own.
            start = time.perf_counter()
            position = await floor.commit(bare_fence.chat_id, bare_position, n)
            commit[BARE].append(time.perf_counter() - start)
            start = time.perf_counter()
            assert await floor.load(bare_fence.chat_id, bare_position) == 2
            load[BARE].append(time.perf_counter() - start)
            bare_position = position
            order = LENGTHS if n % 2 else tuple(reversed(LENGTHS))
            for length in order:
                fence, position = chats[length]
                step = _step(10_000 + n)
                start = time.perf_counter()
                await store.commit_step(fence, new_id(), step)
                commit[length].append(time.perf_counter() - start)
                start = time.perf_counter()
                new = await store.load_history(fence.chat_id, after_position=position)
                load[length].append(time.perf_counter() - start)
                assert len(new.messages) == 2
                chats[length] = (fence, new.last_position)
        return {
            length: (
                statistics.median(commit[length]) * 1000,
                statistics.median(load[length]) * 1000,
            )
            for length in (*LENGTHS, BARE)
        }
    finally:
        await floor.close()
        await store.close()


def _report(engine: str, figures: dict[int | str, tuple[float, float]]) -> None:
    base_commit, base_load = figures[LENGTHS[0]]
    bare_commit, bare_load = figures[BARE]
    for length, (commit, load) in figures.items():
        if length == BARE:
            continue
        print(
            f"  {engine:<10} {length:>6} msgs   commit {commit:6.3f} ms "
            f"({commit / base_commit:4.2f}x)   load new {load:6.3f} ms ({load / base_load:4.2f}x)"
        )
    print(
        f"  {engine:<10} bare driver   commit {bare_commit:6.3f} ms: the store "
        f"{base_commit / bare_commit:4.2f}x (target <= {VS_BARE:.0f}x)   load new "
        f"{bare_load:6.3f} ms: the store {base_load / bare_load:4.2f}x "
        f"(target <= {LOAD_TARGET_MS} ms)"
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    print(f"store commit_step + incremental load_history, median of {rounds} interleaved rounds")
    with tempfile.TemporaryDirectory(prefix="chatd-bench-") as tmp:
        path = f"{tmp}/bench.db"
        sqlite = asyncio.run(
            _measure(f"sqlite+aiosqlite:///{path}", Path(tmp), rounds, SqliteFloor(path))
        )
        _report("sqlite", sqlite)
        cluster = TemporaryPostgres(durable=True)
        cluster.start()
        try:
            floor = PostgresFloor(str(cluster.socket_dir), SUPERUSER, "postgres")
            postgres = asyncio.run(_measure(cluster.url(), Path(tmp), rounds, floor))
        finally:
            cluster.stop()
        _report("postgresql", postgres)
    for engine, figures in (("sqlite", sqlite), ("postgresql", postgres)):
        ratio_1000 = figures[1_000][0] / figures[10][0]
        ratio_3000 = figures[3_000][0] / figures[10][0]
        print(
            f"  {engine}: per-step commit cost 1,000 vs 10 prior messages {ratio_1000:.2f}x, "
            f"3,000 vs 10 {ratio_3000:.2f}x (target <= 1.5x)"
        )


if __name__ == "__main__":
    main()
