"""One replica against three on the same load, on one PostgreSQL (issue: replicas).

A `LocalCluster` (throwaway PostgreSQL, N `chatd serve` processes on loopback)
serves `--chats` chats, each running `--turns` turns back to back; every turn
streams `PARTS` text deltas from the scripted model, each stamped with the wall
clock when it was emitted. Chats are created round-robin over the replicas and
each chat is watched from the *next* replica, so with three replicas most
watchers get their parts relayed through the database (flush + NOTIFY + read).
Reported per cluster size: turns/s, p50/p99 part latency (emit → SSE client),
and lost/duplicated parts (must be 0). The client, PostgreSQL and every replica
share this machine's cores, so the 3-replica figure shows the relay's cost, not
the scale-out a deployment with one machine per replica gets.

Run: `python -m benchmarks.replicas [--chats 100] [--turns 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from chatd.localcluster import LocalCluster

PARTS = 30
DELAY = 0.05  # 20 parts/s per chat, as the service load test
# Production timings, not the chaos tests' short ones.
SETTINGS = {
    "CHATD_LEASE_TTL": "30",
    "CHATD_HEARTBEAT_INTERVAL": "5",
    "CHATD_ACQUIRE_INTERVAL": "1",
    "CHATD_SYNC_INTERVAL": "1",
    "CHATD_MAX_CONCURRENT_CHATS": "2000",
    "CHATD_ACQUIRE_BATCH": "100",
}


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.deltas = 0
        self.duplicated = 0


async def _turn(
    watch: httpx.AsyncClient, chat_id: str, after: int, tally: Tally, seen: set[int]
) -> int:
    """Follow one turn from seq `after` until the chat is idle again; the last seq."""
    last = after
    async with watch.stream("GET", f"/api/chats/{chat_id}/stream?after={after}") as response:
        connected = time.time()
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
                if seq in seen:
                    tally.duplicated += 1
                seen.add(seq)
                last = seq
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data: dict[str, Any] = json.loads(line[6:])
                if name == "message_part" and data["part"]["type"] == "text_delta":
                    tally.deltas += 1
                    emitted = float(data["part"]["delta"])
                    if emitted >= connected:
                        tally.latencies.append(time.time() - emitted)
                elif name == "status" and data["status"] in ("waiting", "error"):
                    return last
    return last


async def _chat(
    clients: list[httpx.AsyncClient], index: int, turns: int, tally: Tally, gate: asyncio.Semaphore
) -> None:
    create = clients[index % len(clients)]
    watch = clients[(index + 1) % len(clients)]
    async with gate:
        response = await create.post("/api/chats", json={"message": "go", "model": "load"})
    chat_id = response.json()["id"]
    seen: set[int] = set()
    last = 0
    for turn in range(turns):
        if turn:
            async with gate:
                await create.post(f"/api/chats/{chat_id}/messages", json={"message": "again"})
        last = await _turn(watch, chat_id, last, tally, seen)


async def measure(replicas: int, chats: int, turns: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="chatd-replicas-"))
    cluster = LocalCluster(root, replicas=replicas, settings=SETTINGS)
    try:
        await cluster.start()
        words = " ".join(f"w{i}" for i in range(PARTS))
        await cluster.scripted_model(
            "load", delta_delay=DELAY, stamp_deltas=True, script=[{"text": words}]
        )
        token = await cluster.user_token("load")
        limits = httpx.Limits(max_connections=chats + 50, max_keepalive_connections=chats + 50)
        clients = [
            httpx.AsyncClient(
                base_url=cluster.url(name),
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
                limits=limits,
            )
            for name in cluster.names
        ]
        tally = Tally()
        gate = asyncio.Semaphore(50)
        started = time.time()
        try:
            await asyncio.gather(*(_chat(clients, i, turns, tally, gate) for i in range(chats)))
        finally:
            for client in clients:
                await client.aclose()
        elapsed = time.time() - started
    finally:
        await cluster.stop()
    latencies = sorted(tally.latencies)
    return {
        "replicas": replicas,
        "turns_per_s": chats * turns / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "lost": chats * turns * PARTS - tally.deltas,
        "duplicated": tally.duplicated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    print(
        f"replicas on one PostgreSQL: {args.chats} chats x {args.turns} turns, "
        f"{PARTS} parts per turn at {1 / DELAY:.0f} parts/s"
    )
    print(f"{'replicas':>8} {'turns/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'lost':>6} {'dup':>5}")
    results = []
    for replicas in (1, 3):
        r = asyncio.run(measure(replicas, args.chats, args.turns))
        results.append(r)
        print(
            f"{r['replicas']:>8} {r['turns_per_s']:>8.1f} {r['p50_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['lost']:>6} {r['duplicated']:>5}"
        )
    one, three = results
    print(
        f"3 replicas / 1: turns/s {three['turns_per_s'] / one['turns_per_s']:.2f}x, "
        f"p99 {three['p99_ms'] / one['p99_ms']:.2f}x"
    )


if __name__ == "__main__":
    main()
