"""Background processes: start, list, wait for output, signal, limits, cleanup."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from chatd.loop import Tool
from chatd.tools import Workspace, Workspaces, builtin_tools
from chatd.tools._processes import MAX_BACKGROUND_PROCESSES

from .helpers import call, error, is_gone_from, result


async def start(tools: dict[str, Tool], command: str) -> str:
    got = result(await call(tools, "execute", command=command, run_in_background=True))
    assert got["success"] is True
    process_id: str = got["background_process_id"]
    return process_id


async def test_background_process_lifecycle(tools: dict[str, Tool]) -> None:
    process_id = await start(tools, "echo first; read line < /dev/null; sleep 0.3; echo second")
    [entry] = result(await call(tools, "process_list"))
    assert entry["process_id"] == process_id
    assert entry["status"] == "running"
    assert entry["exit_code"] is None
    assert entry["started_at"].endswith("Z")

    snapshot = result(await call(tools, "process_output", process_id=process_id, wait_timeout="0s"))
    assert snapshot["note"] == "process is still running"
    assert snapshot["exit_code"] is None

    finished = result(await call(tools, "process_output", process_id=process_id))
    assert finished == {
        "success": True,
        "exit_code": 0,
        "output": "first\nsecond\n",
        "background_process_id": process_id,
    }
    [entry] = result(await call(tools, "process_list"))
    assert (entry["status"], entry["exit_code"]) == ("exited", 0)


async def test_a_trailing_ampersand_runs_in_the_background(tools: dict[str, Tool]) -> None:
    got = result(await call(tools, "execute", command="sleep 30 &"))
    [entry] = result(await call(tools, "process_list"))
    assert entry["process_id"] == got["background_process_id"]
    assert entry["command"] == "sleep 30"
    # && is not a background marker
    assert result(await call(tools, "execute", command="true && echo ok"))["output"] == "ok\n"


async def test_signals_reach_the_whole_group(tools: dict[str, Tool], workspace: Workspace) -> None:
    process_id = await start(tools, "sleep 30 & echo $! > child.pid; wait")
    child = await _read_pid(workspace, "child.pid")
    got = result(await call(tools, "process_signal", process_id=process_id, signal="terminate"))
    assert got == {
        "success": True,
        "message": f"Sent SIGTERM to the process group of {process_id}.",
    }
    finished = result(await call(tools, "process_output", process_id=process_id))
    assert finished["exit_code"] == 128 + 15
    assert finished["success"] is False
    await _until_gone(workspace, child)  # a signal is delivered asynchronously
    message = error(await call(tools, "process_signal", process_id=process_id, signal="kill"))
    assert message == f"Process {process_id} has already exited."


async def test_kill_signal_and_bad_signal_names(tools: dict[str, Tool]) -> None:
    process_id = await start(tools, "trap '' TERM; sleep 30")
    assert "must be" in error(
        await call(tools, "process_signal", process_id=process_id, signal="hup")
    )
    result(await call(tools, "process_signal", process_id=process_id, signal="kill"))
    assert result(await call(tools, "process_output", process_id=process_id))["exit_code"] == 137


async def test_unknown_process_ids_are_error_results(tools: dict[str, Tool]) -> None:
    for name, extra in (("process_output", {}), ("process_signal", {"signal": "kill"})):
        message = error(await call(tools, name, process_id="proc_99", **extra))
        assert message.startswith("No background process proc_99")


async def test_at_most_16_running_processes_per_chat(tools: dict[str, Tool]) -> None:
    first = await start(tools, "exit 0")
    for _ in range(MAX_BACKGROUND_PROCESSES - 1):
        await start(tools, "sleep 30")
    result(await call(tools, "process_output", process_id=first))  # it has exited
    await start(tools, "sleep 30")  # the exited one makes room
    message = error(await call(tools, "execute", command="sleep 30", run_in_background=True))
    assert "16 background processes are already running" in message


async def test_background_output_keeps_the_last_mebibyte_and_caps_what_the_model_sees(
    tools: dict[str, Tool],
) -> None:
    command = "printf BEGIN; head -c 3000000 /dev/zero | tr '\\0' y; printf END"
    process_id = await start(tools, command)
    got = result(await call(tools, "process_output", process_id=process_id))
    assert got["truncated"] == {"original_bytes": 3_000_008, "kept_bytes": 32 * 1024}
    assert got["output"].startswith("BEGINyyy")
    assert got["output"].endswith("yyyEND")


async def test_closing_the_workspace_terminates_its_processes(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    await start(tools, "sleep 30 & echo $! > child.pid; wait")
    child = await _read_pid(workspace, "child.pid")
    await workspace.close(grace=0.3)
    assert is_gone_from(workspace, child)
    [entry] = workspace.processes.entries()
    assert not entry.running
    message = error(await call(tools, "execute", command="true", run_in_background=True))
    assert "workspace is closed" in message


async def test_interrupting_process_output_stops_the_process(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    process_id = await start(tools, "sleep 30 & echo $! > child.pid; wait")
    child = await _read_pid(workspace, "child.pid")
    waiting = asyncio.create_task(call(tools, "process_output", process_id=process_id))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.wait([waiting])
    assert waiting.cancelled()
    assert is_gone_from(workspace, child)
    [entry] = json.loads((await call(tools, "process_list")).content)
    assert entry["status"] == "exited"


async def _read_pid(workspace: Workspace, name: str) -> int:
    path = workspace.root / name
    for _ in range(500):
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} was never written")


async def _until_gone(workspace: Workspace, pid: int) -> None:
    for _ in range(500):
        if is_gone_from(workspace, pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {pid} is still running")


async def test_workspaces_keep_one_workspace_per_chat_until_released(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path)
    first = workspaces.get("chat-a")
    assert workspaces.get("chat-a") is first
    assert first.root == tmp_path / "chat-a"
    other = workspaces.get("chat-b")
    pids = []
    for workspace in (first, other):
        tools = {t.name: t for t in builtin_tools(workspace)}
        await start(tools, "sleep 30 & echo $! > child.pid; wait")
        pids.append(await _read_pid(workspace, "child.pid"))
    await workspaces.release("chat-a", grace=0.3)
    assert is_gone_from(first, pids[0])
    assert not is_gone_from(other, pids[1])
    assert workspaces.get("chat-a") is not first  # a fresh one, same directory
    await workspaces.aclose(grace=0.3)
    assert is_gone_from(other, pids[1])
    await workspaces.release("never-opened")
