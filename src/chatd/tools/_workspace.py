"""The directory a chat's built-in tools are confined to, and the processes it owns.

Every path a built-in tool touches is looked up beneath the root by `beneath()`
(`Workspace.resolve()` for a path only named, as execute's workdir): relative
paths resolve against the root, symlinks are followed, and anything that would
leave the root is refused before the file system is touched (spec §7.2).
Commands started by `execute` run in the workspace's `Sandbox` (bubblewrap unless
another is named), whose only writable place is the root; while any runs, the bytes
the root holds are watched and its commands stopped past the sandbox's disk limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from chatd.tools._beneath import beneath
from chatd.tools._processes import KILL_GRACE, ProcessTable, RunningProcess
from chatd.tools._sandbox import (
    Sandbox,
    SandboxUnavailable,
    SpawnSpec,
    command_environment,
    default_sandbox,
)

__all__ = ["Workspace", "Workspaces"]

_CHAT_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# How often the bytes a workspace holds are counted while its commands run.
_DISK_POLL = 0.1


def disk_usage(root: Path, stop_above: int) -> int:
    """Bytes of disk the tree at `root` takes (its blocks, links not followed); stops
    counting once past `stop_above`."""
    total = 0
    pending = [str(root)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    total += info.st_blocks * 512
                    if total > stop_above:
                        return total
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:
            continue
    return total


class Workspace:
    """A chat's working directory (created if missing) and its background processes.

    Close it (or use it as an async context manager) when the chat is deleted or
    the replica shuts down: that terminates every process the chat still runs.
    """

    __slots__ = (
        "_disk_watch",
        "_prepared",
        "_running",
        "chat_id",
        "disk_exceeded",
        "file_owner",
        "processes",
        "root",
        "sandbox",
    )

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chat_id: str = "",
        sandbox: Sandbox | None = None,
        file_owner: tuple[int, int] | None = None,
    ) -> None:
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.root = Path(os.path.realpath(root))
        self.chat_id = chat_id
        self.sandbox: Sandbox = sandbox if sandbox is not None else default_sandbox()
        # (uid, gid) that files and directories the file tools create must belong to,
        # so the sandboxed user can change them; None: the server's own user.
        self.file_owner = file_owner if file_owner is not None else self.sandbox.file_owner
        self.processes = ProcessTable()
        self._running: set[RunningProcess] = set()
        self._disk_watch: asyncio.Task[None] | None = None
        # Set once commands were stopped for filling the workspace past the limit.
        self.disk_exceeded = False
        self._prepared = False

    @classmethod
    def for_chat(
        cls,
        workspace_root: str | os.PathLike[str],
        chat_id: str,
        *,
        shared: bool = False,
        sandbox: Sandbox | None = None,
    ) -> Workspace:
        """`<workspace_root>/<chat_id>`, or `workspace_root` itself when `shared`."""
        if shared:
            return cls(workspace_root, chat_id=chat_id, sandbox=sandbox)
        if not _CHAT_DIR.match(chat_id):
            raise ValueError(f"chat id {chat_id!r} cannot name a workspace directory")
        return cls(Path(workspace_root) / chat_id, chat_id=chat_id, sandbox=sandbox)

    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the root; `ToolInputError` if it escapes or is empty.

        A name, right when returned: the file tools do their I/O through `beneath()`,
        so that a symlink swapped in afterwards cannot redirect them.
        """
        with beneath(self.root, path) as target:
            return target.path

    def display_path(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the root when it is inside (how results name files)."""
        candidate = Path(path)
        if candidate == self.root:
            return "."
        if candidate.is_relative_to(self.root):
            return str(candidate.relative_to(self.root))
        return str(path)

    def environment(self) -> dict[str, str]:
        """The allowlisted environment of the chat's commands (HOME is the root)."""
        return command_environment(self.chat_id, self.root)

    def spawn_spec(self, command: str, *, cwd: Path, env: dict[str, str]) -> SpawnSpec:
        """How the sandbox starts `sh -c command` in `cwd`; `SandboxUnavailable` if it
        cannot (the message says what to install or set)."""
        self.sandbox.check()
        if not self._prepared:
            self._check_reachable()
            self.sandbox.prepare(self.root)
            self._prepared = True
        return self.sandbox.spawn_spec(command, root=self.root, cwd=cwd, env=env)

    def _check_reachable(self) -> None:
        # A sandbox running as its own user reaches the workspace by its path, so every
        # directory above it must let others through (search only, never list).
        owner = self.sandbox.file_owner
        if owner is None:
            return
        for directory in self.root.parents:
            info = os.stat(directory)
            if not info.st_mode & 0o001 and info.st_uid != owner[0]:
                raise SandboxUnavailable(
                    f"the sandbox user (uid {owner[0]}) cannot reach the workspace: "
                    f"{directory} is not searchable by others (chmod o+x {directory})"
                )

    def watch(self, process: RunningProcess) -> None:
        """Count `process` against the disk limit while it runs."""
        self._running.add(process)
        if self._disk_watch is None or self._disk_watch.done():
            self._disk_watch = asyncio.create_task(self._watch_disk())

    def unwatch(self, process: RunningProcess) -> None:
        self._running.discard(process)

    async def _watch_disk(self) -> None:
        limit = self.sandbox.limits.disk_bytes
        loop = asyncio.get_running_loop()
        while True:
            self._running = {p for p in self._running if p.running}
            if not self._running:
                return
            started = loop.time()
            used = await asyncio.to_thread(disk_usage, self.root, limit)
            if used > limit:
                self.disk_exceeded = True
                running, self._running = list(self._running), set()
                await asyncio.gather(*(p.terminate(0.0) for p in running))
                return
            # A scan of a large tree costs: look at most a fifth of the time.
            await asyncio.sleep(max(_DISK_POLL, 4 * (loop.time() - started)))

    async def close(self, *, grace: float = KILL_GRACE) -> None:
        """Terminate every process the chat started (SIGTERM, SIGKILL after `grace`)."""
        await self.processes.close(grace=grace)
        watch, self._disk_watch = self._disk_watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def __aenter__(self) -> Workspace:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Workspaces:
    """The workspaces a replica holds, one per chat, created on first use.

    A chat's background processes outlive a turn (the model may read their
    output next turn), so the worker keeps its `Workspace` here while it holds the
    chat; `release()` when the chat is deleted, `aclose()` at shutdown.
    """

    __slots__ = ("_open", "root", "sandbox", "shared")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        shared: bool = False,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.root = Path(root)
        self.shared = shared
        self.sandbox: Sandbox = sandbox if sandbox is not None else default_sandbox()
        self._open: dict[str, Workspace] = {}

    def get(self, chat_id: str) -> Workspace:
        workspace = self._open.get(chat_id)
        if workspace is None:
            workspace = Workspace.for_chat(
                self.root, chat_id, shared=self.shared, sandbox=self.sandbox
            )
            self._open[chat_id] = workspace
        return workspace

    def holds(self, chat_id: str) -> bool:
        return chat_id in self._open

    async def release(
        self, chat_id: str, *, grace: float = KILL_GRACE, remove: bool = False
    ) -> None:
        """Stop the chat's processes and forget its workspace; its files stay unless
        `remove` (the chat was deleted)."""
        workspace = self._open.pop(chat_id, None)
        if workspace is not None:
            await workspace.close(grace=grace)
        if remove and not self.shared and _CHAT_DIR.match(chat_id):
            directory = self.root / chat_id
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    async def aclose(self, *, grace: float = KILL_GRACE) -> None:
        """Stop every chat's processes (replica shutdown)."""
        workspaces, self._open = list(self._open.values()), {}
        await asyncio.gather(*(w.close(grace=grace) for w in workspaces))
