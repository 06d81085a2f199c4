"""A hanging built-in tool cannot hang the chat: an interrupt stops it and the step is kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from chatd.loop import (
    FakeModel,
    Interrupt,
    RunOptions,
    RunOutcome,
    ToolCall,
    run,
    stream_from_parts,
)
from chatd.loop._run import INTERRUPTED_TOOL_RESULT
from chatd.tools import ToolConfig, Workspace, builtin_tools, select_tools
from chatd.types import FinishReason, ToolCallPart, ToolResultError, ToolResultPart
from tests.loop.helpers import Recorder, finish, text, tool_call

from .conftest import CONFIG
from .helpers import is_gone_from, pid_in


async def test_interrupt_stops_a_running_command_and_persists_the_partial_step(
    workspace: Workspace,
) -> None:
    command = '{"command": "sleep 600 & echo $! > child.pid; wait", "timeout": "1h"}'
    parts = [
        *text("t", "Running the long job."),
        *tool_call("c1", "execute", command),
        *tool_call("c2", "write_file", '{"path": "note.txt", "content": "done"}'),
        finish(FinishReason.TOOL_CALLS),
    ]
    interrupt = Interrupt()
    persist = Recorder()
    selection = select_tools(ToolConfig(), builtin=builtin_tools(workspace, CONFIG))
    task = asyncio.create_task(
        run(
            selection.apply(
                RunOptions(
                    model=FakeModel(stream_fn=lambda _c: stream_from_parts(parts)),
                    persist_step=persist,
                    interrupt=interrupt,
                    max_steps=5,
                )
            )
        )
    )
    child = await _read_pid(workspace.root / "child.pid")
    interrupt.interrupt()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome is RunOutcome.INTERRUPTED

    assert is_gone_from(workspace, child)
    [step] = persist.steps
    calls = [p for p in step.content if isinstance(p, ToolCallPart)]
    results = {p.tool_call_id: p for p in step.content if isinstance(p, ToolResultPart)}
    assert [c.tool_name for c in calls] == ["execute", "write_file"]
    assert results["c1"].output == ToolResultError(INTERRUPTED_TOOL_RESULT)
    assert set(results) == {"c1", "c2"}  # every call of the step is answered


async def test_an_interrupt_while_the_shell_is_being_started_still_stops_its_children(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio returns the process only after it already runs; an interrupt in that
    # window must still take down the shell's whole group.
    real_spawn = asyncio.create_subprocess_exec
    released = asyncio.Event()

    async def slow_spawn(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        process = await real_spawn(*args, **kwargs)
        await released.wait()
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_spawn)
    tools = {t.name: t for t in builtin_tools(workspace, CONFIG)}
    command = {"command": "sleep 600 & echo $! > child.pid; wait"}
    task = asyncio.create_task(tools["execute"].run(ToolCall("c", "execute", json.dumps(command))))
    child = await _read_pid(workspace.root / "child.pid")
    task.cancel()
    await asyncio.sleep(0.01)
    released.set()
    await asyncio.wait([task])
    assert task.cancelled()
    assert is_gone_from(workspace, child)


async def _read_pid(path: Path) -> int:
    for _ in range(1000):
        pid = pid_in(path)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} was never written")
