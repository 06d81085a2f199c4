"""Calling tools the way the loop does, and checking on processes."""

from __future__ import annotations

import json
import os
from typing import Any

from chatd.loop import Tool, ToolCall, ToolResponse


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


def pid_in(path: os.PathLike[str] | str) -> int | None:
    """The pid a command wrote to `path`, or None while it has not."""
    try:
        with open(path) as file:
            text = file.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None
