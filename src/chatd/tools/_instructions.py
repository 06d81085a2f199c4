"""The workspace's `AGENTS.md`, read for a run's instructions.

Read through `beneath()` like every file tool: a symlink may lead elsewhere inside
the workspace, never out of it, and only a regular file is read (never a FIFO or a
device). A file that is missing, unreadable, escaping or empty is no instructions.
This module must not raise for anything the chat's commands can put in the workspace.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from chatd.tools._args import ToolInputError
from chatd.tools._beneath import beneath
from chatd.tools._workspace import Workspace

__all__ = ["AGENTS_MD", "MAX_AGENTS_MD_BYTES", "read_agents_md"]

AGENTS_MD = "AGENTS.md"
# 64 KiB: upstream's limit on an instruction file; the rest is cut, and the model told so.
MAX_AGENTS_MD_BYTES = 64 * 1024


def _regular(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ToolInputError(f"{AGENTS_MD} is not a regular file")


async def read_agents_md(workspace: Workspace) -> str | None:
    """The text of the workspace's `AGENTS.md` (cut at 64 KiB), or None."""
    return await asyncio.to_thread(_read, workspace.root)


def _read(root: Path) -> str | None:
    try:
        with beneath(root, AGENTS_MD) as target, target.open_read(_regular) as (file, _info):
            data = file.read(MAX_AGENTS_MD_BYTES + 1)
    except (OSError, ToolInputError):
        return None
    text = data[:MAX_AGENTS_MD_BYTES].decode("utf-8", errors="replace").strip()
    if not text:
        return None
    if len(data) > MAX_AGENTS_MD_BYTES:
        text += f"\n[{AGENTS_MD} was cut at {MAX_AGENTS_MD_BYTES} bytes]"
    return text
