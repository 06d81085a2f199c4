"""A hanging built-in tool cannot hang the chat: an interrupt stops it and the step is kept."""

from __future__ import annotations

import asyncio

import pytest

from chatd.loop import ChatInterrupted, FakeModel, Interrupt, RunOptions, run, stream_from_parts
from chatd.loop._run import INTERRUPTED_TOOL_RESULT
from chatd.tools import ToolConfig, Workspace, builtin_tools, select_tools
from chatd.types import FinishReason, ToolCallPart, ToolResultError, ToolResultPart
from tests.loop.helpers import Recorder, finish, text, tool_call

from .conftest import CONFIG
from .helpers import is_gone


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
    pid_file = workspace.root / "child.pid"
    for _ in range(1000):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    child = int(pid_file.read_text())
    interrupt.interrupt()
    with pytest.raises(ChatInterrupted):
        await asyncio.wait_for(task, 10)

    assert is_gone(child)
    [step] = persist.steps
    calls = [p for p in step.content if isinstance(p, ToolCallPart)]
    results = {p.tool_call_id: p for p in step.content if isinstance(p, ToolResultPart)}
    assert [c.tool_name for c in calls] == ["execute", "write_file"]
    assert results["c1"].output == ToolResultError(INTERRUPTED_TOOL_RESULT)
    assert set(results) == {"c1", "c2"}  # every call of the step is answered
