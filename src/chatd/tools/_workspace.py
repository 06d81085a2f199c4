"""The directory a chat's built-in tools are confined to, and the processes it owns.

Every path a built-in tool touches goes through `Workspace.resolve()`: relative
paths resolve against the root, symlinks are followed, and anything that ends up
outside the root is refused before the file system is touched (spec §7.2).
Commands started by `execute` run with their working directory inside the root;
confining what a shell does needs an OS sandbox and is not attempted here.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from types import TracebackType

from chatd.tools._args import ToolInputError
from chatd.tools._processes import KILL_GRACE, ProcessTable

__all__ = ["Workspace", "Workspaces"]

_CHAT_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Workspace:
    """A chat's working directory (created if missing) and its background processes.

    Close it (or use it as an async context manager) when the chat is deleted or
    the replica shuts down: that terminates every process the chat still runs.
    """

    __slots__ = ("chat_id", "processes", "root")

    def __init__(self, root: str | os.PathLike[str], *, chat_id: str = "") -> None:
        os.makedirs(root, exist_ok=True)
        self.root = Path(os.path.realpath(root))
        self.chat_id = chat_id
        self.processes = ProcessTable()

    @classmethod
    def for_chat(
        cls, workspace_root: str | os.PathLike[str], chat_id: str, *, shared: bool = False
    ) -> Workspace:
        """`<workspace_root>/<chat_id>`, or `workspace_root` itself when `shared`."""
        if shared:
            return cls(workspace_root, chat_id=chat_id)
        if not _CHAT_DIR.match(chat_id):
            raise ValueError(f"chat id {chat_id!r} cannot name a workspace directory")
        return cls(Path(workspace_root) / chat_id, chat_id=chat_id)

    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the root; `ToolInputError` if it escapes or is empty."""
        if not path.strip():
            raise ToolInputError("path must not be empty")
        if "\0" in path:
            raise ToolInputError("path must not contain NUL characters")
        # join() keeps an absolute `path` as is; realpath() follows every symlink
        # (even a dangling last one) and folds `..`, so one containment check covers
        # `..`, absolute paths and links pointing out.
        resolved = Path(os.path.realpath(os.path.join(self.root, path)))
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise ToolInputError(f"Path {path} is outside the workspace.")
        return resolved

    def display_path(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the root when it is inside (how results name files)."""
        candidate = Path(path)
        if candidate == self.root:
            return "."
        if candidate.is_relative_to(self.root):
            return str(candidate.relative_to(self.root))
        return str(path)

    async def close(self, *, grace: float = KILL_GRACE) -> None:
        """Terminate every process the chat started (SIGTERM, SIGKILL after `grace`)."""
        await self.processes.close(grace=grace)

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

    __slots__ = ("_open", "root", "shared")

    def __init__(self, root: str | os.PathLike[str], *, shared: bool = False) -> None:
        self.root = Path(root)
        self.shared = shared
        self._open: dict[str, Workspace] = {}

    def get(self, chat_id: str) -> Workspace:
        workspace = self._open.get(chat_id)
        if workspace is None:
            workspace = Workspace.for_chat(self.root, chat_id, shared=self.shared)
            self._open[chat_id] = workspace
        return workspace

    async def release(self, chat_id: str, *, grace: float = KILL_GRACE) -> None:
        """Stop the chat's processes and forget its workspace (its files stay)."""
        workspace = self._open.pop(chat_id, None)
        if workspace is not None:
            await workspace.close(grace=grace)

    async def aclose(self, *, grace: float = KILL_GRACE) -> None:
        """Stop every chat's processes (replica shutdown)."""
        workspaces, self._open = list(self._open.values()), {}
        await asyncio.gather(*(w.close(grace=grace) for w in workspaces))
