"""The load test's client side: lean SSE clients, a server's CPU, and the figures of a window.

Shared by `benchmarks.service_load` (chatd) and `benchmarks._service_peers` (the turn floor
and the LangGraph server), so every server is read by the same client and measured the same
way. One socket per stream, raw HTTP/1.1 with chunked decoding, so the client's CPU stays
small beside the server's on a shared 2-core machine. Nothing here knows how a server
starts a turn: it opens streams, parses frames, samples `/proc` and does arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Chats created (API calls in flight) at once, for every server alike.
CREATE_CONCURRENCY = 50
# A short-turns run that has not ended after this long fails instead of hanging `make bench`.
TURNS_TIMEOUT = 600.0

_STAMP = re.compile(rb'"type":"text_delta","delta":"([0-9. ]+)"')
_ENDED = re.compile(rb'"type":"status","status":"(?:waiting|error)"')
_ASSISTANT = re.compile(rb'"type":"message","message":\{[^{]*"role":"assistant"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(path: str) -> list[str]:
    return Path(path).read_text().rsplit(")", 1)[1].split()


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (a server that forks workers is measured whole)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                pending.append(child)
    return found


def proc_stat(pid: int) -> tuple[float, float, int]:
    """(cpu seconds, main threads' cpu seconds, rss bytes) of a process and its descendants.

    The cpu is user + system time of the process, its live descendants, and the children
    they have reaped; the rss is theirs added up (a server under a reloading supervisor,
    as `langgraph dev` runs by default, is its child). A main thread runs an event loop:
    at ~1 core it is saturated, whatever the other threads (SQLite's connections) leave of
    the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_ticks = main_ticks = rss_pages = 0
    for member in [pid, *_descendants(pid)]:
        try:
            process = _stat_fields(f"/proc/{member}/stat")
            main = _stat_fields(f"/proc/{member}/task/{member}/stat")
        except OSError:
            if member == pid:
                raise
            continue  # it exited between the listing and the read
        # Fields after the command: utime 11, stime 12, cutime 13, cstime 14, rss 21.
        cpu_ticks += sum(int(process[k]) for k in (11, 12, 13, 14))
        main_ticks += int(main[11]) + int(main[12])
        rss_pages += int(process[21])
    return cpu_ticks / ticks, main_ticks / ticks, rss_pages * os.sysconf("SC_PAGE_SIZE")


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

    def received(self, stamps: list[bytes], at: float, since: float) -> None:
        """Count the stamped deltas of one frame received at `at` (wall clock)."""
        self.stamps += stamps
        self.count += len(stamps)
        self.first = self.first or at
        self.last = at
        self.deltas.extend((at, at - float(s)) for s in stamps if float(s) >= since)


class SseClient(asyncio.Protocol):
    """One SSE request over one socket, in chatd's frame format (chatd and both floors).

    Ends at the turn's closing status frame; a subclass reads another server's frames."""

    frame_end = b"\n\n"
    ok_status = b"HTTP/1.1 200"

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

    def finish(self, error: str = "") -> None:
        self.stream.error = error
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def body_ended(self) -> None:
        """The response's last chunk: chatd's stream never ends before its turn does."""
        self.finish("stream ended before the turn did")

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self.buf += data
        if not self.headers_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            if not head.startswith(self.ok_status):
                self.finish(head.split(b"\r\n", 1)[0].decode())
                return
            self.headers_done = True
        # Chunked transfer coding: <hex size>\r\n<data>\r\n ...
        ended = False
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
                ended = True
                break
        frames_end = self.body.rfind(self.frame_end)
        if frames_end >= 0:
            end = frames_end + len(self.frame_end)
            frames, self.body = self.body[:end], self.body[end:]
            self.frames(frames, received)
        if ended and not self.done.done():
            self.body_ended()

    def frames(self, frames: bytes, received: float) -> None:
        stream = self.stream
        for frame in frames.split(b"\n\n"):
            if not frame.startswith(b"id: "):
                continue  # retry:, keep-alive comments, connection-level resets
            stream.seqs.append(int(frame[4 : frame.index(b"\n")]))
            match = _STAMP.search(frame)
            if match is not None:
                # A coalesced delta carries several stamps.
                stream.received(match.group(1).split(), received, self.connected)
            elif _ASSISTANT.search(frame):
                data = json.loads(frame[frame.index(b"data: ") + 6 :])
                text = "".join(p.get("text", "") for p in data["message"]["parts"])
                stream.committed += [s.encode() for s in text.split()]
            elif _ENDED.search(frame):
                self.finish()
                return


async def open_stream(
    port: int, request: bytes, stream: Stream, protocol: type[SseClient] = SseClient
) -> asyncio.Transport:
    """Send `request` on a socket of its own; `stream.done` is set when the stream ends."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stream.done = done
    transport, _ = await loop.create_connection(
        lambda: protocol(request, stream, done), "127.0.0.1", port
    )
    return transport


def chatd_stream_request(chat_id: str, token: str = "") -> bytes:
    """GET /api/chats/{id}/stream, as chatd and both floors serve it."""
    return (
        f"GET /api/chats/{chat_id}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()


async def wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    """Until the server accepts connections (bound it with `asyncio.timeout`); fails if the
    server exits first."""
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"server exited with {server.returncode}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG (1): the kernel sends the server SIGTERM if the benchmark dies first,
    # however it dies, so no server outlives a run.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a server under test (the arguments of `subprocess.Popen`)."""
    return subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)


def stop_process(server: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds (a saturated server may not drain); then
    SIGKILL to any of its descendants still running (a supervisor's worker)."""
    descendants = {pid: _cmdline(pid) for pid in _descendants(server.pid)}
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(grace)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    for pid, cmdline in descendants.items():
        if cmdline and _cmdline(pid) == cmdline:  # still that process, not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


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
            try:
                cpu, main_cpu, rss = proc_stat(self.pid)
            except OSError:
                return  # the server has exited
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


def window_figures(
    streams: list[Stream], start: float, end: float, usage: tuple[float, float, int, float]
) -> dict[str, Any]:
    """Latency, parts/s and CPU of the deltas received between `start` and `end`."""
    window = end - start
    server_cpu, own_cpu, _, loop_cpu = usage
    latencies = [lat for s in streams for at, lat in s.deltas if start <= at <= end]
    delivered = len(latencies)
    p50, p99 = percentiles(latencies)
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "parts_per_s": delivered / window,
        "server_cpu_cores": server_cpu / window,
        "loop_cpu_cores": loop_cpu / window,
        "cpu_us_per_part": server_cpu / max(delivered, 1) * 1e6,
        "client_cpu_cores": own_cpu / window,
    }


class TurnServer(Protocol):
    """A server under test: starts one turn and follows its stream into `stream`."""

    @property
    def sampler(self) -> Sampler: ...

    async def start_turn(self, semaphore: asyncio.Semaphore, stream: Stream) -> None: ...


async def run_turns(server: TurnServer, n: int, parts: int) -> dict[str, Any]:
    """N short turns of `parts` deltas, started as fast as the server takes them, each
    followed to its end; the server's CPU from the first request to the last stream's end."""
    streams = [Stream() for _ in range(n)]
    semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
    started = time.time()
    async with asyncio.timeout(TURNS_TIMEOUT):
        await asyncio.gather(*(server.start_turn(semaphore, s) for s in streams))
        await asyncio.gather(*(s.done for s in streams if s.done is not None))
    elapsed = time.time() - started
    usage = server.sampler.usage_between(started, time.time())
    return turn_figures(streams, parts, elapsed, usage)


def turn_figures(
    streams: list[Stream], parts: int, elapsed: float, usage: tuple[float, float, int, float]
) -> dict[str, Any]:
    """Turns/s, CPU per turn and latency of N short turns that all ended."""
    n = len(streams)
    server_cpu, own_cpu, _, _ = usage
    latencies = [lat for s in streams for _, lat in s.deltas]
    p50, p99 = percentiles(latencies)
    _, duplicated = check_streams(streams)
    delivered = sum(len(set(s.stamps)) for s in streams)
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


_last_progress = 0.0


def progress(message: str) -> None:
    """At most one line a second on stderr, so a long run shows where it is."""
    global _last_progress
    if time.monotonic() - _last_progress >= 1.0:
        _last_progress = time.monotonic()
        print(f"  … {message}", file=sys.stderr, flush=True)


def percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def check_streams(streams: list[Stream]) -> tuple[int, int]:
    """(lost, duplicated): deltas of the committed assistant messages never received,
    and deltas or seqs received more than once."""
    lost = duplicated = 0
    for stream in streams:
        duplicated += len(stream.seqs) - len(set(stream.seqs))
        duplicated += len(stream.stamps) - len(set(stream.stamps))
        lost += len(set(stream.committed) - set(stream.stamps))
    return lost, duplicated


async def ramp_and_window(
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
        progress(f"{n} chats: {n - waiting} streaming, waiting for {waiting}")
        await asyncio.sleep(0.05)
    ramp = time.time() - ramp_start
    start = time.time() + settle
    end = start + window
    await asyncio.sleep(end - time.time() + 0.5)
    return ramp, start, end, sum(1 for s in streams if s.last >= end)
