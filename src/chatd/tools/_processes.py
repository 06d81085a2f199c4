"""Processes started by `execute`: each `sh -c` in its own process group with its output
captured, and the per-chat table of background processes.

Terminating a process always means its whole group: SIGTERM, then SIGKILL for
whatever is left after a grace period, and the leader is always reaped. This
module knows nothing about tool calls or results.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chatd.tools._args import ToolInputError
from chatd.tools._output import OutputCapture
from chatd.tools._sandbox import SpawnSpec

__all__ = [
    "BACKGROUND_OUTPUT_BYTES",
    "KILL_GRACE",
    "MAX_BACKGROUND_PROCESSES",
    "BackgroundProcess",
    "ProcessTable",
    "RunningProcess",
]

# 2 s: spec §7.3, a timed-out command's group gets SIGTERM, then SIGKILL 2 s later.
KILL_GRACE = 2.0
# Spec §7.3: a chat tracks at most 16 background processes, each keeping the last
# 1 MiB of its output; exited ones are forgotten after 30 minutes.
MAX_BACKGROUND_PROCESSES = 16
BACKGROUND_OUTPUT_BYTES = 1024 * 1024
FORGET_EXITED_AFTER = 30 * 60.0
# After the shell exits, how long to keep reading a pipe that a child it left
# running still holds open, so such a child cannot hold the result hostage.
_DRAIN = 0.5
_POLL = 0.02
# SIGKILL cannot be refused, but tearing a process down takes the kernel a moment,
# and on a loaded machine more than a second; only an unkillable (D-state)
# process runs this bound out.
_KILL_LANDS = 5.0
_PROC = Path("/proc")


def exit_status(returncode: int) -> int:
    """A shell-style exit code: 128 + N for a process killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def _signal_group(pgid: int, signum: int, *, spare_leader: bool = False) -> bool:
    """Send `signum` to a process group; False when the group no longer exists.

    `spare_leader`: every member but the leader (a sandbox's own monitor process, which
    would take the whole sandbox down at once instead of letting it end gracefully).
    """
    if spare_leader and signum != signal.SIGKILL and _PROC.is_dir():
        members = [pid for pid in _group_members(pgid) if pid != pgid]
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        return bool(members) or _group_exists(pgid)
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it just is not ours to signal any more
    return True


class _Pipe(asyncio.Protocol):
    def __init__(self, capture: OutputCapture) -> None:
        self.capture = capture
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.capture.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def _spawn(spec: SpawnSpec, *, output_fd: int) -> asyncio.subprocess.Process:
    spawning = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=output_fd,
            stderr=output_fd,
            cwd=spec.cwd,
            env=spec.env,
            pass_fds=spec.pass_fds,
            start_new_session=True,  # its own process group, so a timeout kills the tree
        )
    )
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        # Cancelled while asyncio was still setting the process up: it already runs
        # and may have started children, which asyncio's own clean-up (a kill of the
        # shell alone) would leave behind. Take the whole group down first.
        with contextlib.suppress(Exception):
            await _kill_group(await spawning)
        raise
    finally:
        spec.close()


class RunningProcess:
    """One command (as its sandbox starts it) in a new process group; stdout and stderr
    interleaved into `capture`. Await `wait()` or `terminate()` before dropping it."""

    __slots__ = ("_pipe", "_transport", "capture", "process", "wrapped")

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        transport: asyncio.ReadTransport,
        pipe: _Pipe,
        capture: OutputCapture,
        *,
        wrapped: bool = False,
    ) -> None:
        self.process = process
        self.capture = capture
        self._transport = transport
        self._pipe = pipe
        # The leader is a sandbox's monitor, not the command: signals other than SIGKILL
        # go to the command and its children, and the sandbox ends when the command does.
        self.wrapped = wrapped

    @classmethod
    async def start(cls, spec: SpawnSpec, *, capture: OutputCapture) -> RunningProcess:
        read_fd, write_fd = os.pipe()
        try:
            process = await _spawn(spec, output_fd=write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        pipe = _Pipe(capture)
        reader = os.fdopen(read_fd, "rb", buffering=0)
        try:
            transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: pipe, reader)
        except BaseException:
            reader.close()
            await _kill_group(process)
            raise
        return cls(process, transport, pipe, capture, wrapped=spec.wrapped)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def wait(self) -> int:
        """Wait for the shell to exit and its output to end; the raw return code."""
        code = await self.process.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN):
                await self._pipe.closed.wait()
        self.close_output()
        return code

    def close_output(self) -> None:
        self._transport.close()

    def group_running(self) -> bool:
        """Whether any process of its group still runs (children the shell left behind)."""
        return _group_exists(self.pid)

    def signal(self, signum: int) -> bool:
        """Signal the whole process group; False when nothing of it is left."""
        return _signal_group(self.pid, signum, spare_leader=self.wrapped)

    async def terminate(self, grace: float = KILL_GRACE) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace`, reap the shell.

        Returns once nothing of the group runs (or a last short wait for SIGKILL to
        land ran out). Safe to call on an exited process, and while being cancelled.
        """
        terminated = _signal_group(self.pid, signal.SIGTERM, spare_leader=self.wrapped)
        if terminated and not await _group_ends(self.process, grace):
            await _kill_group(self.process)
        await self.process.wait()
        self.close_output()


async def _group_ends(process: asyncio.subprocess.Process, within: float) -> bool:
    """Wait until the shell has exited and nothing of its group runs; False on time-out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while process.returncode is None or _group_exists(process.pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL)
    return True


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the whole group, then wait until it is really gone and the shell reaped."""
    _signal_group(process.pid, signal.SIGKILL)
    await _group_ends(process, _KILL_LANDS)
    await process.wait()


def _group_exists(pgid: int) -> bool:
    """Whether a process of the group still runs. Zombies do not count: an orphan's
    zombie waits for init to reap it (which some container inits never do), and
    signal 0 would report it alive for ever."""
    if not _PROC.is_dir():
        return _signal_group(pgid, 0)
    with contextlib.closing(_group_members(pgid)) as members:
        return next(members, None) is not None


def _group_members(pgid: int) -> Generator[int, None, None]:
    """The pids of the group's running (not zombie) processes, read from /proc."""
    with os.scandir(_PROC) as entries:
        for entry in entries:
            if entry.name.isdigit() and _in_group(entry.path, pgid):
                yield int(entry.name)


def _in_group(proc_dir: str, pgid: int) -> bool:
    try:
        with open(os.path.join(proc_dir, "stat"), "rb") as file:
            stat = file.read()
    except OSError:
        return False  # exited while we looked
    # "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, eq=False)
class BackgroundProcess:
    """A command started with `run_in_background`, tracked by its chat's `ProcessTable`."""

    process_id: str
    command: str
    started_at: datetime
    process: RunningProcess
    exited_at: float | None = None  # monotonic; set once its output has been read too
    done: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def exit_code(self) -> int | None:
        code = self.process.process.returncode
        return None if code is None else exit_status(code)


class ProcessTable:
    """A chat's background processes: at most 16, the last 1 MiB of output each."""

    __slots__ = ("_closed", "_ids", "_processes")

    def __init__(self) -> None:
        self._processes: dict[str, BackgroundProcess] = {}
        self._ids = itertools.count(1)
        self._closed = False

    async def start(self, command: str, make_spec: Callable[[], SpawnSpec]) -> BackgroundProcess:
        if self._closed:
            raise ToolInputError("this chat's workspace is closed; no process can start")
        self._forget_exited(older_than=FORGET_EXITED_AFTER)
        if len(self._processes) >= MAX_BACKGROUND_PROCESSES:
            # Make room by forgetting the longest-exited process; only running ones count.
            self._forget_exited(older_than=0.0, limit=1)
        if len(self._processes) >= MAX_BACKGROUND_PROCESSES:
            raise ToolInputError(
                f"{MAX_BACKGROUND_PROCESSES} background processes are already running; "
                "stop one with process_signal before starting another."
            )
        capture = OutputCapture(tail=BACKGROUND_OUTPUT_BYTES)
        running = await RunningProcess.start(make_spec(), capture=capture)
        entry = BackgroundProcess(
            process_id=f"proc_{next(self._ids)}",
            command=command,
            started_at=_utc_now(),
            process=running,
        )
        entry.watcher = asyncio.create_task(self._watch(entry))
        self._processes[entry.process_id] = entry
        return entry

    @staticmethod
    async def _watch(entry: BackgroundProcess) -> None:
        try:
            await entry.process.wait()
        finally:
            entry.process.close_output()
            entry.exited_at = time.monotonic()
            entry.done.set()

    def _forget_exited(self, *, older_than: float, limit: int | None = None) -> None:
        now = time.monotonic()
        exited = sorted(
            (p for p in self._processes.values() if p.exited_at is not None),
            key=lambda p: p.exited_at or 0.0,
        )
        for entry in exited[:limit]:
            if now - (entry.exited_at or now) >= older_than:
                del self._processes[entry.process_id]

    def get(self, process_id: str) -> BackgroundProcess:
        self._forget_exited(older_than=FORGET_EXITED_AFTER)
        entry = self._processes.get(process_id)
        if entry is None:
            raise ToolInputError(
                f"No background process {process_id}; process_list shows the chat's processes."
            )
        return entry

    def entries(self) -> list[BackgroundProcess]:
        self._forget_exited(older_than=FORGET_EXITED_AFTER)
        return list(self._processes.values())

    async def close(self, *, grace: float = KILL_GRACE) -> None:
        """Terminate every running process and wait until all are reaped."""
        self._closed = True
        entries = list(self._processes.values())
        await asyncio.gather(*(e.process.terminate(grace) for e in entries if e.running))
        watchers = [e.watcher for e in entries if e.watcher is not None]
        if watchers:
            await asyncio.wait(watchers)
