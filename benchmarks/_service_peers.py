"""The service load test's servers other than chatd: the two floors and the LangGraph server.

Each is a subprocess on loopback, read by the same client as chatd (`benchmarks._load_client`)
with the same concurrency, and measured the same way: the server process's CPU (user +
system, its descendants included) over the same window.

- **streaming floor** (`benchmarks._sse_floor`, steady only): N streams of stamped deltas.
- **turn floor** (`benchmarks._turn_floor`, turns only): per turn, the user message row
  committed to SQLite, the deltas streamed, the reply row committed.
- **LangGraph** (`langgraph dev` from `.venv-bench`, the in-memory LangGraph API server, with
  the graph of `benchmarks/_langgraph_peer/`): per turn a thread is created (`POST /threads`)
  and a run streamed (`POST /threads/{id}/runs/stream`, stream modes `messages-tuple` and
  `values`) to its end. Its fake chat model streams the same number of deltas at the same
  pace as chatd's scripted model; each delta carries its index, so lost and duplicated
  deltas are counted, and the final `values` event holds the committed reply.

This module must not import LangGraph: the load test runs in chatd's venv, the peer in its own.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks._load_client import (
    CREATE_CONCURRENCY,
    Sampler,
    SseClient,
    Stream,
    chatd_stream_request,
    free_port,
    open_stream,
    proc_stat,
    ramp_and_window,
    run_turns,
    spawn,
    stop_process,
    wait_listening,
    window_figures,
)

DELAY = 0.05  # 20 parts/s, the scripted model's pace in the load test
STARTUP_TIMEOUT = 90.0  # seconds for a peer to listen (LangGraph imports for a few seconds)

PEER_DIR = Path(__file__).resolve().parent / "_langgraph_peer"
# `make bench` installs it (requirements/bench.txt); never a chatd dependency.
LANGGRAPH_BIN = Path(__file__).resolve().parents[1] / ".venv-bench" / "bin" / "langgraph"

# No network and no telemetry, in every run: no LangSmith tracing, no version look-up on
# PyPI at start (`LANGGRAPH_NO_VERSION_CHECK`), no license beacon (it runs only with a
# key, removed here).
_LANGGRAPH_OFFLINE = {
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_OTEL_ENABLED": "false",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
}
# What a deployment would turn off and `langgraph dev` leaves on, off unless `as_shipped`:
# at INFO the server logs three lines per run (CPU chatd's figures do not carry; the output
# goes nowhere either way); `--allow-blocking` drops the dev-only blocking-call detector
# (blockbuster patches every blocking call to check it is not on the event loop);
# `--no-reload` drops the file watcher and its supervisor process.
_LANGGRAPH_QUIET = {"LOG_LEVEL": "WARNING", "LOG_COLOR": "false"}
_LANGGRAPH_LEAN_FLAGS = ["--no-reload", "--allow-blocking"]
_LANGGRAPH_SECRETS = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)

# A delta of the peer graph's model, `"<index>:<stamp> "`; several in the committed reply.
_TOKENS = re.compile(rb'"content":"((?:\d+:[0-9.]+ )+)"')


class LangGraphSseClient(SseClient):
    """A LangGraph run's SSE stream: `event:`/`data:` frames ending in CRLF CRLF."""

    frame_end = b"\r\n\r\n"

    def body_ended(self) -> None:
        # The run's end is the response's end (no closing event).
        if not self.stream.committed:
            self.finish("the run ended without its reply in a values event")
        else:
            self.finish()

    def frames(self, frames: bytes, received: float) -> None:
        stream = self.stream
        for frame in frames.split(self.frame_end):
            if frame.startswith(b"event: messages\r\n"):
                match = _TOKENS.search(frame)
                if match is None:
                    continue  # the closing empty chunk
                stamps = []
                for token in match.group(1).split():
                    index, stamp = token.split(b":")
                    stream.seqs.append(int(index))
                    stamps.append(stamp)
                stream.received(stamps, received, self.connected)
            elif frame.startswith(b"event: values\r\n"):
                match = _TOKENS.search(frame)
                if match is not None:
                    stream.committed = [t.split(b":")[1] for t in match.group(1).split()]
            elif frame.startswith(b"event: error\r\n"):
                self.finish(frame.decode(errors="replace")[:300])
                return


class _Peer(abc.ABC):
    """A server subprocess, an HTTP client for its API calls and a CPU sampler."""

    server: subprocess.Popen[bytes]
    sampler: Sampler
    client: httpx.AsyncClient

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="chatd-peer-"))
        self.log_path = self.workdir / "server.log"
        # Every stream opened, closed at the end (its turn is over, or cut off).
        self.streams: list[tuple[asyncio.Transport, Stream]] = []

    @abc.abstractmethod
    def command(self) -> tuple[list[str], dict[str, str], Path]:
        """The server's argv, environment and working directory."""

    async def ready(self) -> None:
        await wait_listening(self.port, self.server)

    def _spawn(self) -> None:
        argv, env, cwd = self.command()
        with self.log_path.open("wb") as log:
            self.server = spawn(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

    async def __aenter__(self) -> Any:
        try:
            self._spawn()
            self.client = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.port}",
                timeout=120,
                # Under uvicorn's 5 s keep-alive, as the chatd client.
                limits=httpx.Limits(max_connections=CREATE_CONCURRENCY + 10, keepalive_expiry=2),
            )
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await self.ready()
        except BaseException as err:
            tail = (
                self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            )
            await self._close()
            if isinstance(err, Exception):
                raise RuntimeError(f"{type(self).__name__} did not start: {err!r}\n{tail}") from err
            raise  # cancelled (SIGTERM, the time limit): unwind as asked
        self.sampler = Sampler(self.server.pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sampler.stop()
        await self._close()

    async def _close(self) -> None:
        for transport, stream in self.streams:
            if stream.done is not None and not stream.done.done():
                stream.done.set_result(None)  # cut off by us: not an error
            transport.close()
        await asyncio.sleep(0.2)  # the closes happen on the loop's next turns
        if hasattr(self, "client"):
            await self.client.aclose()
        if hasattr(self, "server"):
            stop_process(self.server, grace=20)
        shutil.rmtree(self.workdir, ignore_errors=True)


class TurnFloor(_Peer):
    """`benchmarks._turn_floor` on its own SQLite file."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = [sys.executable, "-m", "benchmarks._turn_floor", "--port", str(self.port)]
        argv += ["--db", str(self.workdir / "floor.db"), "--parts", str(self.parts)]
        return argv, dict(os.environ), Path.cwd()

    async def start_turn(self, semaphore: asyncio.Semaphore, stream: Stream) -> None:
        async with semaphore:
            response = await self.client.post("/api/chats", json={"message": "go"})
            response.raise_for_status()
            chat_id: str = response.json()["id"]
        request = chatd_stream_request(chat_id)
        self.streams.append((await open_stream(self.port, request, stream), stream))


class LangGraph(_Peer):
    """`langgraph dev` serving `benchmarks/_langgraph_peer/`, from a copy in a temp dir
    (it keeps its dev persistence, `.langgraph_api/`, in its working directory)."""

    def __init__(self, binary: Path, parts: int, jobs: int, as_shipped: bool = False) -> None:
        super().__init__()
        self.binary = binary
        self.parts = parts
        self.jobs = jobs
        self.as_shipped = as_shipped

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        for name in ("langgraph.json", "graph.py"):
            shutil.copy(PEER_DIR / name, self.workdir / name)
        env = {k: v for k, v in os.environ.items() if k not in _LANGGRAPH_SECRETS}
        env.update(_LANGGRAPH_OFFLINE)
        argv = [str(self.binary), "dev", "--no-browser"]
        if not self.as_shipped:
            env.update(_LANGGRAPH_QUIET)
            argv += _LANGGRAPH_LEAN_FLAGS
        # As many concurrent runs as the workload has chats (the default is 10; chatd is
        # given CHATD_MAX_CONCURRENT_CHATS=2000).
        argv += ["--port", str(self.port), "--n-jobs-per-worker", str(self.jobs)]
        return argv, env, self.workdir

    async def ready(self) -> None:
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"exited with {self.server.returncode}")
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if (await self.client.get("/ok")).status_code == 200:
                    return
            await asyncio.sleep(0.2)

    async def start_turn(self, semaphore: asyncio.Semaphore, stream: Stream) -> None:
        async with semaphore:
            response = await self.client.post("/threads", json={})
            response.raise_for_status()
            thread_id: str = response.json()["thread_id"]
        body = json.dumps(
            {
                "assistant_id": "chat",
                "input": {"messages": [{"role": "user", "content": "go"}]},
                "stream_mode": ["messages-tuple", "values"],
                "config": {"configurable": {"parts": self.parts, "delay": DELAY}},
            }
        ).encode()
        request = (
            f"POST /threads/{thread_id}/runs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode() + body
        transport = await open_stream(self.port, request, stream, LangGraphSseClient)
        self.streams.append((transport, stream))


@dataclass(frozen=True)
class LangGraphOptions:
    binary: Path
    steady_parts: int  # deltas in a steady run (it is cut off long before they run out)
    as_shipped: bool = False  # `langgraph dev` defaults (see `_LANGGRAPH_LEAN_FLAGS`)


async def langgraph_turns(langgraph: LangGraphOptions, n: int, parts: int) -> dict[str, Any]:
    """The short turns against LangGraph: a thread and a streamed run each."""
    async with LangGraph(langgraph.binary, parts, n, langgraph.as_shipped) as peer:
        return await run_turns(peer, n, parts)


async def floor_turns(n: int, parts: int) -> dict[str, Any]:
    """The short turns against the bare turn server (`benchmarks._turn_floor`)."""
    async with TurnFloor(parts) as peer:
        return await run_turns(peer, n, parts)


async def langgraph_steady(
    langgraph: LangGraphOptions, n: int, settle: float, window: float, ramp_timeout: float
) -> dict[str, Any]:
    """chatd's steady window against LangGraph: N runs streaming at once, then closed."""
    async with LangGraph(langgraph.binary, langgraph.steady_parts, n, langgraph.as_shipped) as peer:
        _, _, rss_before = proc_stat(peer.server.pid)
        streams = [Stream() for _ in range(n)]
        semaphore = asyncio.Semaphore(CREATE_CONCURRENCY)
        ramp_start = time.time()
        starting = asyncio.gather(*(peer.start_turn(semaphore, s) for s in streams))
        ramp, start, end, streaming = await ramp_and_window(
            streams, ramp_start, ramp_timeout, settle, window
        )
        usage = peer.sampler.usage_between(start, end)
        if not starting.done():  # saturated: the runs not started yet never will be
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
    return {
        "chats": n,
        "streaming": streaming,
        # Every run numbers its deltas from 0: a gap is a lost delta (the runs are cut off
        # by closing their streams, so there is no committed reply to check against).
        "lost": sum(max(s.seqs, default=-1) + 1 - len(set(s.seqs)) for s in streams),
        "duplicated": sum(len(s.seqs) - len(set(s.seqs)) for s in streams),
        "errors": sum(1 for s in streams if s.error),
        "rss_per_chat_kib": (usage[2] - rss_before) / n / 1024,
        "ramp_s": ramp,
        **window_figures(streams, start, end, usage),
    }
