"""Service load: N concurrent chats streaming from the scripted model at 20 parts/s each.

A real `chatd serve` process (SQLite, loopback) serves N chats at once; one SSE client
per chat (httpx, in this process) follows its stream. Reported per N:
- p50/p99 part latency: scripted model emit (wall clock stamped into each delta) →
  SSE client receive, for parts emitted after the client connected;
- parts/s delivered, lost and duplicated parts (must be 0);
- server RSS per chat, server CPU (cores, and µs per delivered part) from the first
  chat's creation to the last chat's end, and the most chats streaming at one moment;
- the benchmark process's own CPU (cores): it shares the machine with the server.
Each chat's SSE client connects as soon as its chat is created, so every part is
measured and the chats' turns overlap as much as the creation rate allows.
DESIGN.md's target for one process on 2 cores: 1,000 chats, p99 <= 100 ms, 0 lost,
CPU <= 0.6 core. The client shares the machine's two cores with the server.

Run: `python -m benchmarks.service_load --chats 100 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from chatd.store import Store

PARTS_PER_CHAT = 60
DELAY = 0.05  # 20 parts/s


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_stat(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


async def _prepare(data_dir: Path, parts: int) -> str:
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir}/chatd.db", data_dir=data_dir)
    try:
        user = await store.create_user("load")
        token, _ = await store.create_api_token(user.id)
        words = " ".join(f"w{i}" for i in range(parts))
        await store.create_model_config(
            "load",
            "scripted",
            "load",
            options={"delta_delay": DELAY, "stamp_deltas": True, "script": [{"text": words}]},
        )
        return token
    finally:
        await store.close()


class ChatResult:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.deltas = 0
        self.seqs: list[int] = []
        self.first_delta = 0.0
        self.last_delta = 0.0


def _peak_concurrency(results: list[ChatResult]) -> int:
    """The most chats that were receiving deltas at the same moment."""
    edges = sorted(
        edge for r in results if r.deltas for edge in ((r.first_delta, 1), (r.last_delta, -1))
    )
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


async def _follow(client: httpx.AsyncClient, chat_id: str, result: ChatResult) -> None:
    async with client.stream("GET", f"/api/chats/{chat_id}/stream") as response:
        connected = time.time()
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                result.seqs.append(int(line[4:]))
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data: dict[str, Any] = json.loads(line[6:])
                if name == "message_part" and data["part"]["type"] == "text_delta":
                    result.deltas += 1
                    received = time.time()
                    result.first_delta = result.first_delta or received
                    result.last_delta = received
                    # A coalesced event carries several stamps: each is one delta.
                    stamps = [float(x) for x in data["part"]["delta"].split()]
                    result.deltas += len(stamps) - 1
                    result.latencies.extend(received - x for x in stamps if x >= connected)
                elif name == "status" and data["status"] in ("waiting", "error"):
                    return


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHATD_DATA_DIR": str(data_dir),
        "CHATD_MAX_CONCURRENT_CHATS": "2000",
        "CHATD_ACQUIRE_BATCH": "200",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _run(n: int, parts: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="chatd-load-"))
    token = await _prepare(data_dir, parts)
    port = _free_port()
    server = _start_server(data_dir, port)
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=n + 20, max_keepalive_connections=n + 20)
    try:
        async with httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            limits=limits,
        ) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            _, rss_before = _proc_stat(server.pid)
            semaphore = asyncio.Semaphore(50)
            results = [ChatResult() for _ in range(n)]
            peak_rss = 0

            async def chat(result: ChatResult) -> None:
                async with semaphore:
                    response = await client.post(
                        "/api/chats", json={"message": "go", "model": "load"}
                    )
                    chat_id: str = response.json()["id"]
                await _follow(client, chat_id, result)

            async def sample_rss() -> None:
                nonlocal peak_rss
                while True:
                    peak_rss = max(peak_rss, _proc_stat(server.pid)[1])
                    await asyncio.sleep(0.5)

            cpu_start, _ = _proc_stat(server.pid)
            client_cpu_start = time.process_time()
            started = time.time()
            sampler = asyncio.create_task(sample_rss())
            await asyncio.gather(*(chat(r) for r in results))
            sampler.cancel()
            elapsed = time.time() - started
            client_cpu = time.process_time() - client_cpu_start
            cpu_end, _ = _proc_stat(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    latencies = sorted(x for r in results for x in r.latencies)
    delivered = sum(r.deltas for r in results)
    duplicated = sum(len(r.seqs) - len(set(r.seqs)) for r in results)
    return {
        "chats": n,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
        "parts_per_s": delivered / elapsed,
        "lost": n * parts - delivered,
        "duplicated": duplicated,
        "rss_per_chat_kib": (peak_rss - rss_before) / n / 1024,
        "server_cpu_cores": (cpu_end - cpu_start) / elapsed,
        "cpu_us_per_part": (cpu_end - cpu_start) / max(delivered, 1) * 1e6,
        "client_cpu_cores": client_cpu / elapsed,
        "peak_streaming": _peak_concurrency(results),
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--parts", type=int, default=PARTS_PER_CHAT, help="text deltas per chat's turn"
    )
    args = parser.parse_args()
    print(
        f"{'chats':>6} {'p50 ms':>8} {'p99 ms':>8} {'parts/s':>9} {'lost':>6} {'dup':>5} "
        f"{'KiB/chat':>9} {'cpu cores':>9} {'µs/part':>8} {'client':>7} {'peak':>5} {'secs':>5}"
    )
    for n in args.chats:
        r = asyncio.run(_run(n, args.parts))
        print(
            f"{r['chats']:>6} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['parts_per_s']:>9.0f} "
            f"{r['lost']:>6} {r['duplicated']:>5} {r['rss_per_chat_kib']:>9.1f} "
            f"{r['server_cpu_cores']:>9.2f} {r['cpu_us_per_part']:>8.0f} "
            f"{r['client_cpu_cores']:>7.2f} {r['peak_streaming']:>5} {r['seconds']:>5.1f}"
        )


if __name__ == "__main__":
    main()
