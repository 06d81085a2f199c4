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

Its peers, each a subprocess read by the same client with the same concurrency and the
same number of chats, their CPU measured over the same window (`benchmarks._service_peers`):

- **floor** (steady): a bare uvicorn SSE server on the same stack (`benchmarks._sse_floor`:
  uvloop, httptools, one task per stream writing a stamped delta every 50 ms, nothing of
  chatd). `chatd / floor` is what chatd's real path costs per part above what any server
  on this stack and machine pays to deliver it (target <= 1.5x).
- **floor** (turns): the bare turn server (`benchmarks._turn_floor`): per turn the user
  message row committed to SQLite (chatd's pragmas), the deltas streamed, the reply row
  committed (target: chatd <= 2x its CPU per turn).
- **langgraph** (both): the LangGraph API server (`langgraph dev`, in-memory runtime, from
  `.venv-bench`) serving `benchmarks/_langgraph_peer/`, a graph whose fake chat model
  streams the same deltas at the same pace; per turn a thread and a streamed run (target:
  chatd <= 0.25x its CPU per turn).

Per N the servers run one after the other, in reverse order every other time (`--rounds`
repeats them; the ratios are of the medians). Every server is stopped at the end, on an
error, on SIGTERM, and when `--time-limit` runs out.

DESIGN.md's target for one process on 2 cores: 1,000 concurrent chats, p99 <= 100 ms,
0 lost, server CPU <= 0.6 core.

Run: `python -m benchmarks.service_load --chats 100 300` (`--only steady|turns`,
`--no-peers` for chatd alone, `--no-langgraph`, `--langgraph PATH` for its CLI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from benchmarks._load_client import (
    CREATE_CONCURRENCY,
    Sampler,
    Stream,
    chatd_stream_request,
    check_streams,
    free_port,
    open_stream,
    proc_stat,
    progress,
    ramp_and_window,
    run_turns,
    spawn,
    stop_process,
    wait_listening,
    window_figures,
)
from benchmarks._service_peers import (
    LANGGRAPH_BIN,
    LangGraphOptions,
    floor_turns,
    langgraph_steady,
    langgraph_turns,
)
from chatd.store import Store

PARTS_PER_TURN = 60
DELAY = 0.05  # 20 parts/s
# A steady turn lasts this long unless interrupted (it always is).
STEADY_TURN_SECONDS = 600
STEADY_PARTS = int(STEADY_TURN_SECONDS / DELAY)
# A saturated server answers slowly: chats it does not interrupt in time count as errors.
INTERRUPT_TIMEOUT = 15.0

# The targets this benchmark reports (issue: the LangGraph server as a measured peer).
TURN_VS_LANGGRAPH = 0.25  # chatd's CPU per turn at most a quarter of LangGraph's
TURN_VS_FLOOR = 2.0  # ... and at most twice the turn floor's
PART_VS_FLOOR = 1.5  # chatd's CPU per streamed part at most 1.5x the streaming floor's


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHATD_DATA_DIR": str(data_dir),
        "CHATD_MAX_CONCURRENT_CHATS": "2000",
        "CHATD_ACQUIRE_BATCH": "200",
    }
    return spawn(
        [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _start_floor(port: int) -> subprocess.Popen[bytes]:
    return spawn(
        [sys.executable, "-m", "benchmarks._sse_floor", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Bench:
    """One chatd server and its chats for one workload."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.data_dir = Path(tempfile.mkdtemp(prefix="chatd-load-"))
        self.port = free_port()
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
        try:
            await self._healthy()
        except BaseException:
            await self._close()
            raise
        self.sampler = Sampler(self.server.pid)
        return self

    async def _healthy(self) -> None:
        assert self.server is not None
        for _ in range(300):
            if self.server.poll() is not None:
                raise RuntimeError(f"chatd serve exited with {self.server.returncode}")
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if (await self.client.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise TimeoutError("chatd serve did not answer /healthz in 30 s")

    async def __aexit__(self, *exc: object) -> None:
        self.sampler.stop()
        await self._close()

    async def _close(self) -> None:
        await self.client.aclose()
        assert self.server is not None
        stop_process(self.server, grace=60)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def start_turn(self, semaphore: asyncio.Semaphore, stream: Stream) -> None:
        async with semaphore:
            response = await self.client.post("/api/chats", json={"message": "go", "model": "load"})
            response.raise_for_status()
            chat_id: str = response.json()["id"]
        self.chat_ids.append(chat_id)
        await open_stream(self.port, chatd_stream_request(chat_id, self.token), stream)


async def steady(n: int, settle: float, window: float, ramp_timeout: float) -> dict[str, Any]:
    async with Bench(words=STEADY_PARTS) as bench:
        assert bench.server is not None
        _, _, rss_before = proc_stat(bench.server.pid)
        streams = [Stream() for _ in range(n)]
        semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
        ramp_start = time.time()
        starting = asyncio.gather(*(bench.start_turn(semaphore, s) for s in streams))
        ramp, start, end, streaming = await ramp_and_window(
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

        progress(f"{n} chats: window done, interrupting")
        if not starting.done():  # saturated: the chats not created yet never will be
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        streams = [s for s in streams if s.done is not None]
        await asyncio.gather(*(interrupt(c) for c in bench.chat_ids))
        progress(f"{n} chats: waiting for the turns to end")
        await asyncio.wait(
            [s.done for s in streams if s.done is not None], timeout=INTERRUPT_TIMEOUT
        )
        for s in streams:
            if s.done is not None and not s.done.done():
                s.error = "the turn did not end after its interrupt"
                s.committed = []  # nothing to check it against
        usage = bench.sampler.usage_between(start, end)
        created = len(bench.chat_ids)
    lost, duplicated = check_streams(streams)
    return {
        "chats": n,
        "streaming": streaming,
        "lost": lost,
        "duplicated": duplicated,
        "errors": sum(1 for s in streams if s.error) + len(refused),
        "rss_per_chat_kib": (usage[2] - rss_before) / max(created, 1) / 1024,
        "ramp_s": ramp,
        **window_figures(streams, start, end, usage),
    }


async def floor(n: int, settle: float, window: float, ramp_timeout: float) -> dict[str, Any]:
    """The same window against the bare uvicorn SSE server (`benchmarks._sse_floor`)."""
    port = free_port()
    server = _start_floor(port)
    try:
        async with asyncio.timeout(30):
            await wait_listening(port, server)
        _, _, rss_before = proc_stat(server.pid)
        sampler = Sampler(server.pid)
        streams = [Stream() for _ in range(n)]
        ramp_start = time.time()
        transports = [
            await open_stream(port, chatd_stream_request(f"floor{i}"), s)
            for i, s in enumerate(streams)
        ]
        ramp, start, end, streaming = await ramp_and_window(
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
        stop_process(server, grace=30)
    return {
        "chats": n,
        "streaming": streaming,
        # Each stream numbers its parts from 1: a gap is a lost part.
        "lost": sum(max(s.seqs, default=0) - len(set(s.seqs)) for s in streams),
        "duplicated": sum(len(s.seqs) - len(set(s.seqs)) for s in streams),
        "errors": sum(1 for s in streams if s.error),
        "rss_per_chat_kib": (usage[2] - rss_before) / n / 1024,
        "ramp_s": ramp,
        **window_figures(streams, start, end, usage),
    }


async def turns(n: int, parts: int) -> dict[str, Any]:
    async with Bench(words=parts) as bench:
        return await run_turns(bench, n, parts)


def _alternating(names: list[str], turn: int) -> list[str]:
    """Every other measurement runs the servers in reverse order (A B C, C B A, ...), so
    a drift in the machine's load does not always fall on the same server."""
    return names if turn % 2 == 0 else names[::-1]


def _ratio(ours: float, theirs: float, target: float | None = None, lower: str = "") -> str:
    """`2.70×` with how it compares to a target (`≤ target`)."""
    ratio = ours / theirs if theirs else float("nan")
    text = f"{ratio:.2f}×"
    if lower and ratio < 1:
        text += f" ({1 / ratio:.1f}× {lower})"
    if target is not None:
        text += f" (target ≤ {target:g}×: {'met' if ratio <= target else 'MISSED'})"
    return text


_STEADY_HEADER = (
    f"{'server':<10} {'chats':>5} {'live':>5} {'p50 ms':>7} {'p99 ms':>7} {'parts/s':>8} "
    f"{'lost':>5} {'dup':>4} {'err':>4} {'KiB/chat':>8} {'cores':>6} {'loop':>5} "
    f"{'µs/part':>8} {'client':>6} {'ramp s':>6}"
)
_TURNS_HEADER = (
    f"{'server':<10} {'chats':>5} {'turns/s':>8} {'ms cpu/turn':>11} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'lost':>5} {'dup':>4} {'err':>4} {'cores':>6} {'client':>6} {'secs':>6}"
)


def _print_steady(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:<10} {r['chats']:>5} {r['streaming']:>5} {r['p50_ms']:>7.1f} "
        f"{r['p99_ms']:>7.1f} {r['parts_per_s']:>8.0f} {r['lost']:>5} {r['duplicated']:>4} "
        f"{r['errors']:>4} {r['rss_per_chat_kib']:>8.1f} {r['server_cpu_cores']:>6.2f} "
        f"{r['loop_cpu_cores']:>5.2f} {r['cpu_us_per_part']:>8.1f} "
        f"{r['client_cpu_cores']:>6.2f} {r['ramp_s']:>6.1f}",
        flush=True,
    )


def _print_turns(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name:<10} {r['chats']:>5} {r['turns_per_s']:>8.1f} {r['cpu_ms_per_turn']:>11.1f} "
        f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['lost']:>5} {r['duplicated']:>4} "
        f"{r['errors']:>4} {r['server_cpu_cores']:>6.2f} {r['client_cpu_cores']:>6.2f} "
        f"{r['seconds']:>6.1f}",
        flush=True,
    )


Runs = dict[str, list[dict[str, Any]]]  # server -> its results at one N, one per round


def _median(runs: Runs, name: str, key: str) -> float:
    return statistics.median(r[key] for r in runs[name])


def _steady_summary(runs: Runs) -> None:
    ours = _median(runs, "chatd", "cpu_us_per_part")
    cores = _median(runs, "chatd", "server_cpu_cores")
    live = statistics.median(r["streaming"] for r in runs["chatd"])
    for peer, target, lower in (("floor", PART_VS_FLOOR, ""), ("langgraph", None, "lower")):
        if peer not in runs:
            continue
        per_part = _ratio(ours, _median(runs, peer, "cpu_us_per_part"), target, lower)
        peer_cores = _ratio(cores, _median(runs, peer, "server_cpu_cores"))
        peer_live = statistics.median(r["streaming"] for r in runs[peer])
        print(
            f"  chatd / {peer}: {per_part} CPU per part, {peer_cores} cores, "
            f"{live:.0f} / {peer_live:.0f} chats streaming{_saturation(peer, runs[peer])}",
            flush=True,
        )


def _saturation(name: str, results: list[dict[str, Any]]) -> str:
    """A note when a server delivered under 95 % of the parts its chats streamed: its CPU
    then goes partly to parts still queued, and its figure per delivered part is high."""
    offered = statistics.median(r["chats"] for r in results) / DELAY
    delivered = statistics.median(r["parts_per_s"] for r in results)
    if delivered >= 0.95 * offered:
        return ""
    p50 = statistics.median(r["p50_ms"] for r in results)
    return f" ({name} saturated: {delivered:,.0f} of {offered:,.0f} parts/s, p50 {p50:,.0f} ms)"


def _turns_summary(runs: Runs) -> None:
    ours = _median(runs, "chatd", "cpu_ms_per_turn")
    for peer, target, lower in (
        ("langgraph", TURN_VS_LANGGRAPH, "lower"),
        ("floor", TURN_VS_FLOOR, ""),
    ):
        if peer not in runs:
            continue
        theirs = _median(runs, peer, "cpu_ms_per_turn")
        print(
            f"  chatd / {peer}: {_ratio(ours, theirs, target, lower)} CPU per turn "
            f"({ours:.1f} / {theirs:.1f} ms)",
            flush=True,
        )


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, nargs="+", default=[100, 300])
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
        "--rounds", type=int, default=1, help="runs of every server per N, alternating order"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="chatd only: no floor, no LangGraph"
    )
    parser.add_argument("--no-langgraph", action="store_true", help="skip the LangGraph peer")
    parser.add_argument(
        "--langgraph",
        type=Path,
        default=LANGGRAPH_BIN,
        help="the `langgraph` CLI of the benchmark venv (make .venv-bench/.installed)",
    )
    parser.add_argument(
        "--langgraph-as-shipped",
        action="store_true",
        help="`langgraph dev` defaults: file watcher, blocking-call detector, INFO logs",
    )
    parser.add_argument(
        "--time-limit",
        type=int,
        default=3600,
        help="seconds: a run still going then is stopped, with every server it started",
    )
    args = parser.parse_args()
    # `kill` of the benchmark unwinds like Ctrl-C: every server it started is stopped.
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGALRM, _terminated)
    signal.alarm(args.time_limit)
    with_langgraph = not (args.no_peers or args.no_langgraph)
    if with_langgraph and not args.langgraph.exists():
        print(f"LangGraph peer skipped: {args.langgraph} not found", file=sys.stderr)
        with_langgraph = False
    # Absolute: the server runs in a temp dir of its own.
    langgraph = LangGraphOptions(args.langgraph.absolute(), STEADY_PARTS, args.langgraph_as_shipped)
    measured = 0  # measurements so far, for the alternating order

    def measure(
        workloads: dict[str, Callable[[], Awaitable[dict[str, Any]]]],
        show: Callable[[str, dict[str, Any]], None],
    ) -> Runs:
        nonlocal measured
        runs: Runs = {name: [] for name in workloads}
        for _ in range(args.rounds):
            for name in _alternating(list(workloads), measured):
                result = asyncio.run(workloads[name]())
                runs[name].append(result)
                show(name, result)
            measured += 1
        return runs

    if args.only != "turns":
        print(f"steady: every chat streaming, {args.window:.0f} s window", flush=True)
        print(_STEADY_HEADER, flush=True)
        for n in args.chats:
            window = (n, args.settle, args.window, args.ramp_timeout)
            steady_runs = {"chatd": partial(steady, *window)}
            if not args.no_peers:
                steady_runs["floor"] = partial(floor, *window)
            if with_langgraph:
                steady_runs["langgraph"] = partial(langgraph_steady, langgraph, *window)
            _steady_summary(measure(steady_runs, _print_steady))
    if args.only != "steady":
        print(
            f"turns: {args.parts} deltas each, started as fast as the server takes them",
            flush=True,
        )
        print(_TURNS_HEADER, flush=True)
        for n in args.chats:
            turn_runs = {"chatd": partial(turns, n, args.parts)}
            if not args.no_peers:
                turn_runs["floor"] = partial(floor_turns, n, args.parts)
            if with_langgraph:
                turn_runs["langgraph"] = partial(langgraph_turns, langgraph, n, args.parts)
            _turns_summary(measure(turn_runs, _print_turns))


if __name__ == "__main__":
    main()
