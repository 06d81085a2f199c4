"""The process tools: `execute`, `process_output`, `process_list`, `process_signal`.

Foreground commands run under a timeout (default 10 s, clamped to the configured
maximum); on timeout or interrupt the whole process group is terminated before
the result is returned. Output shown to the model is capped at 32 KiB and the cap
is stated in the result. Results are JSON text in upstream's shape (spec §7.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from pathlib import Path
from typing import Any

from chatd.loop import ToolResponse
from chatd.tools._args import Arguments, ToolInputError, format_seconds, json_text
from chatd.tools._config import BuiltinToolsConfig
from chatd.tools._output import CappedText, OutputCapture
from chatd.tools._processes import BackgroundProcess, RunningProcess, exit_status
from chatd.tools._sandbox import SandboxUnavailable, SpawnSpec
from chatd.tools._workspace import Workspace

__all__ = ["ProcessTools"]

_MODEL_INTENT_CHARS = 100  # spec §7.3: shown in the UI, so kept short
# A command that only prints files: read_file serves the model better.
_CAT_ONLY = re.compile(r"^\s*cat\s+[^|&;<>$`(){}]+$")
_SIGNALS = {"terminate": signal.SIGTERM, "kill": signal.SIGKILL}


def _background_form(command: str) -> str | None:
    """`command` without its trailing single `&` (upstream treats it as background)."""
    stripped = command.rstrip()
    if stripped.endswith("&") and not stripped.endswith("&&"):
        return stripped[:-1].rstrip()
    return None


def _output_fields(output: CappedText) -> dict[str, Any]:
    fields: dict[str, Any] = {"output": output.text}
    truncation = output.truncation()
    if truncation is not None:
        fields["truncated"] = truncation
    return fields


class ProcessTools:
    """The handlers of the four process tools for one workspace."""

    def __init__(self, workspace: Workspace, config: BuiltinToolsConfig) -> None:
        self.workspace = workspace
        self.config = config

    def _timeout(self, args: Arguments, key: str, notes: list[str]) -> float:
        seconds = args.duration(key, default=self.config.execute_timeout)
        maximum = self.config.execute_max_timeout
        if seconds > maximum:
            notes.append(f"{key} was clamped to the maximum of {format_seconds(maximum)} s")
            seconds = maximum
        return seconds

    async def execute(self, args: Arguments) -> ToolResponse:
        command = args.text("command")
        background = args.flag("run_in_background")
        short = _background_form(command)
        if short is not None:
            command, background = short, True
        if not command.strip():
            raise ToolInputError("command must not be empty")
        notes: list[str] = []
        timeout = self._timeout(args, "timeout", notes)
        if timeout <= 0:
            raise ToolInputError("timeout must be greater than zero")
        workdir = self.workspace.resolve(args.text("workdir", default="."))
        if not workdir.is_dir():
            raise ToolInputError(
                f"workdir {self.workspace.display_path(workdir)} is not a directory"
            )
        intent = args.text("model_intent", default="")[:_MODEL_INTENT_CHARS]
        if background:
            response = await self._start_background(command, workdir)
        else:
            response = await self._run_foreground(command, workdir, timeout, notes)
        return response.with_metadata({"model_intent": intent}) if intent else response

    def _spec(self, command: str, workdir: Path) -> SpawnSpec:
        try:
            return self.workspace.spawn_spec(command, cwd=workdir, env=self.workspace.environment())
        except SandboxUnavailable as err:
            raise ToolInputError(f"Commands cannot run: {err}.") from None

    def _disk_note(self) -> str:
        limit = self.workspace.sandbox.limits.disk_bytes // (1024 * 1024)
        return (
            f"the workspace grew past its {limit} MiB disk limit, so its commands were "
            "stopped; delete files to make room"
        )

    async def _start_background(self, command: str, workdir: Path) -> ToolResponse:
        entry = await self.workspace.processes.start(command, lambda: self._spec(command, workdir))
        self.workspace.watch(entry.process)
        return ToolResponse.text(
            json_text(
                {
                    "success": True,
                    "background_process_id": entry.process_id,
                    "note": "Started in the background; read its output with process_output.",
                }
            )
        )

    async def _run_foreground(
        self, command: str, workdir: Path, limit: float, notes: list[str]
    ) -> ToolResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.workspace.disk_exceeded = False
        process = await RunningProcess.start(self._spec(command, workdir), capture=OutputCapture())
        self.workspace.watch(process)
        timed_out = False
        try:
            async with asyncio.timeout(limit):
                await process.wait()
        except TimeoutError:
            timed_out = True
        finally:
            if process.running:  # timed out, or the call was cancelled (an interrupt)
                await asyncio.shield(process.terminate(self.config.kill_grace))
            process.close_output()
            self.workspace.unwatch(process)
        if process.group_running():
            # Children left running would be invisible to process_list: stop them. (A
            # sandbox ends with its command; what is left there is only being torn down.)
            await process.terminate(self.config.kill_grace)
            if not process.wrapped:
                notes.append(
                    "processes the command left running were stopped; "
                    "use run_in_background to keep a process running"
                )
        code = exit_status(await process.process.wait())
        result: dict[str, Any] = {
            "success": code == 0 and not timed_out,
            "exit_code": code,
            **_output_fields(process.capture.render()),
            "wall_duration_ms": round((loop.time() - started) * 1000),
        }
        if _CAT_ONLY.match(command):
            notes.append("To read a file, prefer read_file: it numbers lines and reads ranges.")
        if notes:
            result["note"] = "; ".join(notes)
        if self.workspace.disk_exceeded:
            result["success"] = False
            result["error"] = self._disk_note()
            return ToolResponse.error(json_text(result))
        if timed_out:
            result["error"] = (
                f"command timed out after {format_seconds(limit)} s; "
                "its process group was terminated"
            )
            return ToolResponse.error(json_text(result))
        return ToolResponse.text(json_text(result))

    async def process_output(self, args: Arguments) -> ToolResponse:
        entry = self.workspace.processes.get(args.text("process_id"))
        notes: list[str] = []
        wait = self._timeout(args, "wait_timeout", notes)
        if wait > 0 and not entry.done.is_set():
            try:
                with contextlib.suppress(TimeoutError):  # still running: described as such
                    async with asyncio.timeout(wait):
                        await entry.done.wait()
            except asyncio.CancelledError:
                # Spec §7.6: interrupting a wait stops the process it waits for.
                await asyncio.shield(entry.process.terminate(self.config.kill_grace))
                raise
        return ToolResponse.text(json_text(self._describe(entry, notes)))

    def _describe(self, entry: BackgroundProcess, notes: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "success": entry.exit_code == 0,
            "exit_code": entry.exit_code,
            **_output_fields(entry.process.capture.render()),
            "background_process_id": entry.process_id,
        }
        if entry.running:
            notes.insert(0, "process is still running")
        elif self.workspace.disk_exceeded:
            notes.append(self._disk_note())
        if notes:
            result["note"] = "; ".join(notes)
        return result

    async def process_list(self, args: Arguments) -> ToolResponse:
        listing = [
            {
                "process_id": entry.process_id,
                "command": entry.command,
                "status": "running" if entry.running else "exited",
                "exit_code": entry.exit_code,
                "started_at": entry.started_at.isoformat(timespec="milliseconds").replace(
                    "+00:00", "Z"
                ),
            }
            for entry in self.workspace.processes.entries()
        ]
        return ToolResponse.text(json_text(listing))

    async def process_signal(self, args: Arguments) -> ToolResponse:
        entry = self.workspace.processes.get(args.text("process_id"))
        name = args.text("signal")
        signum = _SIGNALS.get(name)
        if signum is None:
            raise ToolInputError('signal must be "terminate" or "kill"')
        if not entry.running or not entry.process.signal(signum):
            raise ToolInputError(f"Process {entry.process_id} has already exited.")
        message = f"Sent {signum.name} to the process group of {entry.process_id}."
        return ToolResponse.text(json_text({"success": True, "message": message}))
