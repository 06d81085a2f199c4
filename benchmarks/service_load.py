"""Service load: N chats streaming from the scripted model at 20 parts/s each, over SSE.

A real `chatd serve` process (SQLite, loopback) serves the chats; this process creates
them over HTTP and follows each one's stream with a lean SSE client (one socket per
chat, raw HTTP/1.1 with chunked decoding, so the client's CPU stays small beside the
server's on a shared 2-core machine). Two workloads per N:

- **steady**: what DESIGN.md's target describes — N chats streaming *at the same
  time*. Every chat's turn is long; once the last chat's first delta has arrived the
  benchmark waits `--settle` seconds and then measures a `--window` of seconds:
  part latency (scripted-model emit, a wall-clock stamp in each delta → client
  receive), parts/s, server CPU (cores, and µs per delivered part) and RSS per chat.
  Then it interrupts every chat and checks each stream: seqs contiguous from the
  first to the last (no part lost), none twice.
- **turns**: N short turns (`--parts`, default 60 deltas = 3 s) started as fast as
  the server takes them: turns/s, server CPU per turn, latency, lost/duplicated
  deltas. This is the cost of starting and finishing turns, which the steady
  window leaves out.

Its peer, measured in the same run after each steady N: the **floor**, a bare uvicorn
SSE server on the same stack (`benchmarks._sse_floor`: uvloop, httptools, one task
per stream writing a stamped delta every 50 ms, nothing of chatd), read by the same
client. The `chatd / floor` line is what chatd's real path costs per part above
what any server on this stack and machine pays to deliver it.

DESIGN.md's target for one process on 2 cores: 1,000 concurrent chats, p99 <= 100 ms,
0 lost, server CPU <= 0.6 core.

Run: `python -m benchmarks.service_load --chats 100 1000` (`--only steady|turns`,
`--no-floor` to skip the peer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chatd.store import Store

PARTS_PER_TURN = 60
DELAY = 0.05  # 20 parts/s
# A steady turn lasts this long unless interrupted (it always is).
STEADY_TURN_SECONDS = 600
CREATE_CONCURRENCY = 50
# A saturated server answers slowly: chats it does not interrupt in time count as errors.
INTERRUPT_TIMEOUT = 15.0

_STAMP = re.compile(rb'"type":"text_delta","delta":"([0-9. ]+)"')
_ENDED = re.compile(rb'"type":"status","status":"(?:waiting|error)"')
_ASSISTANT = re.compile(rb'"type":"message","message":\{[^{]*"role":"assistant"')


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_stat(pid: int) -> tuple[float, float, int]:
    """(cpu seconds, its main thread's cpu seconds, rss bytes) of a process.

    The main thread runs the event loop: at ~1 core it is saturated, whatever the
    other threads (SQLite's connections) leave of the machine."""
    ticks = os.sysconf("SC_CLK_TCK")

    def fields(path: str) -> list[str]:
        return Path(path).read_text().rsplit(")", 1)[1].split()

    process, main = fields(f"/proc/{pid}/stat"), fields(f"/proc/{pid}/task/{pid}/stat")
    cpu = (int(process[11]) + int(process[12])) / ticks
    main_cpu = (int(main[11]) + int(main[12])) / ticks
    rss = int(process[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, main_cpu, rss


@dataclass
class Stream:
    """What one chat's SSE client saw."""

    seqs: list[int] = field(default_factory=list)
    # (received wall time, latency) per delta emitted after the client connected.
    deltas: list[tuple[float, float]] = field(default_factory=list)
    count: int = 0  # deltas received, including any emitted before connecting
    stamps: list[bytes] = field(default_factory=list)
    committed: list[bytes] = field(default_factory=list)  # stamps in the assistant message
    first: float = 0.0
    last: float = 0.0
    error: str = ""
    done: asyncio.Future[None] | None = None  # set when the stream has ended


class SseClient(asyncio.Protocol):
    """GET /api/chats/{id}/stream over one socket; ends at the turn's closing status."""

    def __init__(self, request: bytes, stream: Stream, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stream = stream
        self.done = done
        self.buf = b""
        self.body = b""
        self.headers_done = False
        self.connected = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected = time.time()
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.stream.error = f"connection lost: {exc}"
            self.done.set_result(None)

    def _finish(self, error: str = "") -> None:
        self.stream.error = error
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self.buf += data
        if not self.headers_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            if not head.startswith(b"HTTP/1.1 200"):
                self._finish(head.split(b"\r\n", 1)[0].decode())
                return
            self.headers_done = True
        # Chunked transfer coding: <hex size>\r\n<data>\r\n ...
        while True:
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.buf[:line_end], 16)
            if len(self.buf) < line_end + 2 + size + 2:
                break
            self.body += self.buf[line_end + 2 : line_end + 2 + size]
            self.buf = self.buf[line_end + 4 + size :]
            if size == 0:
                self._finish("stream ended before the turn did")
                return
        frames_end = self.body.rfind(b"\n\n")
        if frames_end < 0:
            return
        frames, self.body = self.body[: frames_end + 2], self.body[frames_end + 2 :]
        self._frames(frames, received)

    def _frames(self, frames: bytes, received: float) -> None:
        stream = self.stream
        for frame in frames.split(b"\n\n"):
            if not frame.startswith(b"id: "):
                continue  # retry:, keep-alive comments, connection-level resets
            stream.seqs.append(int(frame[4 : frame.index(b"\n")]))
            match = _STAMP.search(frame)
            if match is not None:
                stamps = match.group(1).split()  # a coalesced delta carries several
                stream.stamps += stamps
                stream.count += len(stamps)
                stream.first = stream.first or received
                stream.last = received
                stream.deltas.extend(
                    (received, received - float(s)) for s in stamps if float(s) >= self.connected
                )
            elif _ASSISTANT.search(frame):
                data = json.loads(frame[frame.index(b"data: ") + 6 :])
                text = "".join(p.get("text", "") for p in data["message"]["parts"])
                stream.committed += [s.encode() for s in text.split()]
            elif _ENDED.search(frame):
                self._finish()
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


def _start_floor(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks._sse_floor", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(server: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (a saturated server may not drain)."""
    server.terminate()
    try:
        server.wait(grace)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def _window_figures(
    streams: list[Stream], start: float, end: float, usage: tuple[float, float, int, float]
) -> dict[str, Any]:
    """Latency, parts/s and CPU of the deltas received between `start` and `end`."""
    window = end - start
    server_cpu, own_cpu, _, loop_cpu = usage
    latencies = [lat for s in streams for at, lat in s.deltas if start <= at <= end]
    delivered = len(latencies)
    p50, p99 = _percentiles(latencies)
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "parts_per_s": delivered / window,
        "server_cpu_cores": server_cpu / window,
        "loop_cpu_cores": loop_cpu / window,
        "cpu_us_per_part": server_cpu / max(delivered, 1) * 1e6,
        "client_cpu_cores": own_cpu / window,
    }


class Sampler:
    """A server process's CPU, main-thread CPU and RSS (and this process's CPU), every 0.25 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        # wall, server cpu, rss, own cpu, server main-thread cpu
        self.samples: list[tuple[float, float, int, float, float]] = []
        self.task = asyncio.create_task(self._sample())

    def stop(self) -> None:
        self.task.cancel()

    async def _sample(self) -> None:
        while True:
            cpu, main_cpu, rss = _proc_stat(self.pid)
            self.samples.append((time.time(), cpu, rss, time.process_time(), main_cpu))
            await asyncio.sleep(0.25)

    def usage_between(self, start: float, end: float) -> tuple[float, float, int, float]:
        """(server cpu seconds, own cpu seconds, peak server rss, server main-thread cpu
        seconds) between two wall times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan"), float("nan"), 0, float("nan")
        first, last = inside[0], inside[-1]
        span = last[0] - first[0]
        scale = (end - start) / span if span > 0 else 1.0
        return (
            (last[1] - first[1]) * scale,
            (last[3] - first[3]) * scale,
            max(s[2] for s in inside),
            (last[4] - first[4]) * scale,
        )


class Bench:
    """One server and its chats for one workload."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.data_dir = Path(tempfile.mkdtemp(prefix="chatd-load-"))
        self.port = _free_port()
        self.token = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.chat_ids: list[str] = []  # in the order they were created

    async def __aenter__(self) -> Bench:
        store = await Store.open(
            f"sqlite+aiosqlite:///{self.data_dir}/chatd.db", data_dir=self.data_dir
        )
        try:
            user = await store.create_user("load")
            self.token, _ = await store.create_api_token(user.id)
            text = " ".join(f"w{i}" for i in range(self.words))
            await store.create_model_config(
                "load",
                "scripted",
                "load",
                options={"delta_delay": DELAY, "stamp_deltas": True, "script": [{"text": text}]},
            )
        finally:
            await store.close()
        self.server = _start_server(self.data_dir, self.port)
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
            # Under uvicorn's 5 s keep-alive, so an idle pooled connection is never reused
            # just as the server closes it.
            limits=httpx.Limits(max_connections=CREATE_CONCURRENCY + 10, keepalive_expiry=2),
        )
        for _ in range(300):
            try:
                if (await self.client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        self.sampler = Sampler(self.server.pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sampler.stop()
        await self.client.aclose()
        assert self.server is not None
        _stop(self.server, grace=60)

    async def start_chat(self, semaphore: asyncio.Semaphore, stream: Stream) -> str:
        async with semaphore:
            response = await self.client.post("/api/chats", json={"message": "go", "model": "load"})
            response.raise_for_status()
            chat_id: str = response.json()["id"]
        self.chat_ids.append(chat_id)
        await self.follow(chat_id, stream)
        return chat_id

    async def follow(self, chat_id: str, stream: Stream) -> None:
        await _follow(self.port, chat_id, stream, self.token)


async def _follow(port: int, chat_id: str, stream: Stream, token: str = "") -> asyncio.Transport:
    """Open one chat's SSE stream on its own socket; `stream.done` is set when it ends."""
    request = (
        f"GET /api/chats/{chat_id}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stream.done = done
    transport, _ = await loop.create_connection(
        lambda: SseClient(request, stream, done), "127.0.0.1", port
    )
    return transport


_last_progress = 0.0


def _progress(message: str) -> None:
    """At most one line a second on stderr, so a long run shows where it is."""
    global _last_progress
    if time.monotonic() - _last_progress >= 1.0:
        _last_progress = time.monotonic()
        print(f"  … {message}", file=sys.stderr, flush=True)


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def _check(streams: list[Stream]) -> tuple[int, int]:
    """(lost, duplicated): deltas of the committed assistant messages never received,
    and deltas or seqs received more than once."""
    lost = duplicated = 0
    for stream in streams:
        duplicated += len(stream.seqs) - len(set(stream.seqs))
        duplicated += len(stream.stamps) - len(set(stream.stamps))
        lost += len(set(stream.committed) - set(stream.stamps))
    return lost, duplicated


async def steady(n: int, settle: float, window: float, ramp_timeout: float) -> dict[str, Any]:
    async with Bench(words=int(STEADY_TURN_SECONDS / DELAY)) as bench:
        assert bench.server is not None
        _, _, rss_before = _proc_stat(bench.server.pid)
        streams = [Stream() for _ in range(n)]
        semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
        ramp_start = time.time()
        starting = asyncio.gather(*(bench.start_chat(semaphore, s) for s in streams))
        ramp, start, end, streaming = await _ramp_and_window(
            streams, ramp_start, ramp_timeout, settle, window
        )

        refused: list[str] = []

        async def interrupt(chat_id: str) -> None:
            async with semaphore:
                try:
                    response = await bench.client.post(
                        f"/api/chats/{chat_id}/interrupt", timeout=INTERRUPT_TIMEOUT
                    )
                    response.raise_for_status()
                except httpx.HTTPError as err:  # a saturated server may not answer in time
                    refused.append(f"{chat_id}: {err!r}")

        _progress(f"{n} chats: window done, interrupting")
        if not starting.done():  # saturated: the chats not created yet never will be
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        streams = [s for s in streams if s.done is not None]
        await asyncio.gather(*(interrupt(c) for c in bench.chat_ids))
        _progress(f"{n} chats: waiting for the turns to end")
        await asyncio.wait(
            [s.done for s in streams if s.done is not None], timeout=INTERRUPT_TIMEOUT
        )
        for s in streams:
            if s.done is not None and not s.done.done():
                s.error = "the turn did not end after its interrupt"
                s.committed = []  # nothing to check it against
        usage = bench.sampler.usage_between(start, end)
        created = len(bench.chat_ids)
    lost, duplicated = _check(streams)
    return {
        "chats": n,
        "streaming": streaming,
        "lost": lost,
        "duplicated": duplicated,
        "errors": sum(1 for s in streams if s.error) + len(refused),
        "rss_per_chat_kib": (usage[2] - rss_before) / max(created, 1) / 1024,
        "ramp_s": ramp,
        **_window_figures(streams, start, end, usage),
    }


async def _ramp_and_window(
    streams: list[Stream], ramp_start: float, ramp_timeout: float, settle: float, window: float
) -> tuple[float, float, float, int]:
    """Wait until every stream has had its first delta (or the ramp timeout: a saturated
    server never gets every chat streaming, and is measured with what it has), then
    `settle` and `window` seconds. Returns the ramp's seconds, the window's start and
    end, and how many chats streamed through it (a turn that ended early would not)."""
    n = len(streams)
    while (waiting := sum(1 for s in streams if s.first == 0.0 and not s.error)) and (
        time.time() < ramp_start + ramp_timeout
    ):
        _progress(f"{n} chats: {n - waiting} streaming, waiting for {waiting}")
        await asyncio.sleep(0.05)
    ramp = time.time() - ramp_start
    start = time.time() + settle
    end = start + window
    await asyncio.sleep(end - time.time() + 0.5)
    return ramp, start, end, sum(1 for s in streams if s.last >= end)


async def floor(n: int, settle: float, window: float, ramp_timeout: float) -> dict[str, Any]:
    """The same window against the bare uvicorn SSE server (`benchmarks._sse_floor`)."""
    port = _free_port()
    server = _start_floor(port)
    try:
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        _, _, rss_before = _proc_stat(server.pid)
        sampler = Sampler(server.pid)
        streams = [Stream() for _ in range(n)]
        ramp_start = time.time()
        transports = [await _follow(port, f"floor{i}", s) for i, s in enumerate(streams)]
        ramp, start, end, streaming = await _ramp_and_window(
            streams, ramp_start, ramp_timeout, settle, window
        )
        usage = sampler.usage_between(start, end)
        sampler.stop()
        for s, transport in zip(streams, transports, strict=True):
            if s.done is not None and not s.done.done():
                s.done.set_result(None)
            transport.close()
        await asyncio.sleep(0.5)  # the closes happen on the loop's next turns
    finally:
        _stop(server, grace=30)
    return {
        "chats": n,
        "streaming": streaming,
        # Each stream numbers its parts from 1: a gap is a lost part.
        "lost": sum(max(s.seqs, default=0) - len(set(s.seqs)) for s in streams),
        "duplicated": sum(len(s.seqs) - len(set(s.seqs)) for s in streams),
        "errors": sum(1 for s in streams if s.error),
        "rss_per_chat_kib": (usage[2] - rss_before) / n / 1024,
        "ramp_s": ramp,
        **_window_figures(streams, start, end, usage),
    }


async def turns(n: int, parts: int) -> dict[str, Any]:
    async with Bench(words=parts) as bench:
        streams = [Stream() for _ in range(n)]
        semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
        started = time.time()
        await asyncio.gather(*(bench.start_chat(semaphore, s) for s in streams))
        await asyncio.wait_for(
            asyncio.gather(*(s.done for s in streams if s.done is not None)),
            timeout=600,
        )
        elapsed = time.time() - started
        server_cpu, own_cpu, _, _ = bench.sampler.usage_between(started, time.time())
    latencies = [lat for s in streams for _, lat in s.deltas]
    p50, p99 = _percentiles(latencies)
    _, duplicated = _check(streams)
    delivered = sum(s.count for s in streams)
    return {
        "chats": n,
        "turns_per_s": n / elapsed,
        "cpu_ms_per_turn": server_cpu / n * 1000,
        "p50_ms": p50,
        "p99_ms": p99,
        "lost": n * parts - delivered,
        "duplicated": duplicated,
        "errors": sum(1 for s in streams if s.error),
        "server_cpu_cores": server_cpu / elapsed,
        "client_cpu_cores": own_cpu / elapsed,
        "seconds": elapsed,
    }


def _print_steady(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label:>6} {r['streaming']:>5} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
        f"{r['parts_per_s']:>8.0f} {r['lost']:>5} {r['duplicated']:>4} {r['errors']:>4} "
        f"{r['rss_per_chat_kib']:>8.1f} {r['server_cpu_cores']:>6.2f} "
        f"{r['loop_cpu_cores']:>5.2f} "
        f"{r['cpu_us_per_part']:>8.1f} {r['client_cpu_cores']:>6.2f} {r['ramp_s']:>6.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--only", choices=["steady", "turns"])
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before the window")
    parser.add_argument(
        "--ramp-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for every chat to stream before measuring anyway (steady)",
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured (steady)")
    parser.add_argument("--parts", type=int, default=PARTS_PER_TURN, help="deltas per short turn")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the bare uvicorn SSE peer (steady)"
    )
    args = parser.parse_args()
    if args.only != "turns":
        print(
            f"steady: every chat streaming, {args.window:.0f} s window\n"
            f"{'chats':>6} {'live':>5} {'p50 ms':>7} {'p99 ms':>7} {'parts/s':>8} {'lost':>5} "
            f"{'dup':>4} {'err':>4} {'KiB/chat':>8} {'cores':>6} {'loop':>5} {'µs/part':>8} "
            f"{'client':>6} "
            f"{'ramp s':>6}",
            flush=True,
        )
        for n in args.chats:
            r = asyncio.run(steady(n, args.settle, args.window, args.ramp_timeout))
            _print_steady(str(n), r)
            if not args.no_floor:
                peer = asyncio.run(floor(n, args.settle, args.window, args.ramp_timeout))
                _print_steady("floor", peer)
                print(
                    f"{'':>6} chatd / floor: {r['cpu_us_per_part'] / peer['cpu_us_per_part']:.1f}× "
                    f"CPU per part, {r['server_cpu_cores'] / peer['server_cpu_cores']:.1f}× "
                    f"cores, {r['streaming']} / {peer['streaming']} chats streaming",
                    flush=True,
                )
    if args.only != "steady":
        print(
            f"turns: {args.parts} deltas each, started as fast as the server takes them\n"
            f"{'chats':>6} {'turns/s':>8} {'ms cpu/turn':>11} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'lost':>5} {'dup':>4} {'err':>4} {'cores':>6} {'client':>6} {'secs':>6}",
            flush=True,
        )
        for n in args.chats:
            r = asyncio.run(turns(n, args.parts))
            print(
                f"{r['chats']:>6} {r['turns_per_s']:>8.1f} {r['cpu_ms_per_turn']:>11.1f} "
                f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['lost']:>5} {r['duplicated']:>4} "
                f"{r['errors']:>4} {r['server_cpu_cores']:>6.2f} {r['client_cpu_cores']:>6.2f} "
                f"{r['seconds']:>6.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
