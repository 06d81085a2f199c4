"""What the sandbox costs one `execute`: bubblewrap against the unsandboxed mode.

Workload: the built-in `execute` tool, called as the loop calls it, runs `true` (and,
as a second row, `echo` of a short line piped through `wc`) in a chat's workspace;
the figure is the wall time from the call to its result (spawn, run, reap, JSON
result), median and p90 over the rounds. Sandboxed and unsandboxed calls alternate
within one run, so drift on this shared machine hits both alike; the ratio is the
sandbox's price. The floor is a bare `asyncio.create_subprocess_exec("true")`.

Run: `make bench` (or `.venv/bin/python -m benchmarks.sandbox_execute [rounds]`).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from chatd.loop import Tool, ToolCall
from chatd.tools import Bubblewrap, Unsandboxed, Workspace, builtin_tools

ROUNDS = 200
COMMANDS = {"true": "true", "pipe": "echo hello sandbox | wc -c"}


async def _floor() -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    return time.perf_counter() - started


async def _execute(tool: Tool, command: str) -> float:
    started = time.perf_counter()
    response = await tool.run(ToolCall("bench", "execute", json.dumps({"command": command})))
    elapsed = time.perf_counter() - started
    if response.is_error or not json.loads(response.content)["success"]:
        raise SystemExit(f"execute failed: {response.content}")
    return elapsed


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.chmod(base, 0o711)  # the sandbox user (when run as root) passes through
        sandboxed = Workspace(base / "sandboxed", chat_id="bench-a", sandbox=Bubblewrap())
        plain = Workspace(base / "plain", chat_id="bench-b", sandbox=Unsandboxed())
        tools = {
            "bubblewrap": {t.name: t for t in builtin_tools(sandboxed)}["execute"],
            "unsandboxed": {t.name: t for t in builtin_tools(plain)}["execute"],
        }
        samples: dict[tuple[str, str], list[float]] = {
            (kind, name): [] for kind in tools for name in COMMANDS
        }
        floor: list[float] = []
        for command in COMMANDS.values():  # warm both paths once
            for tool in tools.values():
                await _execute(tool, command)
        for _ in range(rounds):
            floor.append(await _floor())
            for name, command in COMMANDS.items():
                for kind, tool in tools.items():
                    samples[(kind, name)].append(await _execute(tool, command))
        await sandboxed.close()
        await plain.close()
    floor_median, floor_p90 = _ms(floor)
    print(f"execute, spawn to result ({rounds} rounds, interleaved; ms)")
    print(
        f"{'command':8} {'mode':12} {'median':>8} {'p90':>8} {'/ unsandboxed':>14} {'/ floor':>8}"
    )
    for name in COMMANDS:
        plain_median, _ = _ms(samples[("unsandboxed", name)])
        for kind in tools:
            median, p90 = _ms(samples[(kind, name)])
            print(
                f"{name:8} {kind:12} {median:8.2f} {p90:8.2f} "
                f"{median / plain_median:13.2f}x {median / floor_median:7.2f}x"
            )
    print(f"{'floor':8} {'bare spawn':12} {floor_median:8.2f} {floor_p90:8.2f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS))
