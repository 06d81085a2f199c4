"""Calling tools the way the loop does, and checking on processes."""

from __future__ import annotations

import json
import os
from typing import Any

from chatd.loop import Tool, ToolCall, ToolResponse
from chatd.tools import Workspace


async def call(tools: dict[str, Tool], name: str, **arguments: Any) -> ToolResponse:
    return await tools[name].run(ToolCall(f"call-{name}", name, json.dumps(arguments)))


def result(response: ToolResponse) -> Any:
    """The JSON a successful tool returned."""
    assert not response.is_error, response.content
    return json.loads(response.content)


def error(response: ToolResponse) -> str:
    assert response.is_error, response.content
    return response.content


def is_gone(pid: int) -> bool:
    """No running process `pid` (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(b")") + 2 :].split()[0] == b"Z"


def is_gone_from(workspace: Workspace, pid: int) -> bool:
    """No running process `pid` in `workspace`'s sandbox: `pid` is what a command saw
    (its PID namespace's number), so look for a host process whose innermost pid is
    `pid` and whose environment is that workspace's (HOME is the workspace root)."""
    home = f"HOME={workspace.root}".encode()
    with os.scandir("/proc") as entries:
        return not any(_runs_as(entry, pid, home) for entry in entries)


def _runs_as(entry: os.DirEntry[str], pid: int, home: bytes) -> bool:
    """Whether /proc entry `entry` is a live process seen as `pid` inside its sandbox."""
    if not entry.name.isdigit():
        return False
    try:
        with open(f"{entry.path}/status", "rb") as file:
            status = file.read()
        with open(f"{entry.path}/environ", "rb") as file:
            environ = file.read().split(b"\0")
    except OSError:
        return False
    nspid = [line.split()[1:] for line in status.splitlines() if line.startswith(b"NSpid:")]
    inner = int(nspid[0][-1]) if nspid and nspid[0] else -1
    return inner == pid and home in environ and not is_gone(int(entry.name))


def pid_in(path: os.PathLike[str] | str) -> int | None:
    """The pid a command wrote to `path`, or None while it has not."""
    try:
        with open(path) as file:
            text = file.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None
