"""The file tools: `read_file`, `write_file`, `edit_files`, `attach_file`.

Every path is resolved inside the workspace first (spec §7.2). Writes go to a
temporary file in the same directory and are renamed over the target, so an
interrupted or failed write never leaves a half-written file; `edit_files`
computes every file in memory before writing any. Blocking file I/O runs in a
worker thread so a large file never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import mimetypes
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatd.loop import ToolResponse
from chatd.tools._args import Arguments, ToolInputError, json_text
from chatd.tools._output import cap_text
from chatd.tools._workspace import Workspace

__all__ = ["FileTools", "atomic_write", "describe_os_error"]

# 1 MiB: upstream's maxReadFileBytes; larger files are read by line range only.
MAX_READ_BYTES = 1024 * 1024
DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_WRITE_BYTES = 1024 * 1024
MAX_ATTACH_BYTES = 5 * 1024 * 1024
# A NUL byte in the first 8 KiB marks a file as binary (as git and upstream do).
_BINARY_SNIFF = 8192
_NOT_APPLIED = "No edits were applied."


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename; keeps an existing mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # 0o666 minus the umask, as for any new file; O_EXCL so nothing else is clobbered.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass(slots=True)
class _ReadRequest:
    path: Path
    name: str
    offset: int
    limit: int
    ranged: bool


def _read_lines(request: _ReadRequest) -> dict[str, Any]:
    name = request.name
    info = os.stat(request.path)
    if stat.S_ISDIR(info.st_mode):
        raise ToolInputError(f"{name} is a directory; list it with execute (ls).")
    _require_regular(info, name)
    if info.st_size > MAX_READ_BYTES and not request.ranged:
        raise ToolInputError(
            f"{name} is {info.st_size} bytes, over the {MAX_READ_BYTES} byte limit for reading "
            "a whole file; pass offset and limit to read a range of lines."
        )
    with open(request.path, "rb") as file:
        if b"\0" in file.read(_BINARY_SNIFF):
            raise ToolInputError(
                f"{name} looks like a binary file; use attach_file to show it to the model."
            )
        file.seek(0)
        first, last = request.offset, request.offset + request.limit - 1
        lines: list[str] = []
        size = total = cut = 0
        full = False
        for raw in file:
            total += 1
            if total < first or total > last or full:
                continue
            text = raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
            if len(text) > MAX_LINE_CHARS:
                text, cut = text[:MAX_LINE_CHARS] + "…", cut + 1
            line = f"{total:>6}\t{text}"
            size += len(line) + 1
            if size > MAX_READ_BYTES:
                full = True  # keep counting lines for total_lines
                continue
            lines.append(line)
    if total and first > total:
        raise ToolInputError(f"offset {first} is past the end of {name}, which has {total} lines.")
    returned = len(lines)
    end = first + returned - 1
    truncated = end < total
    result: dict[str, Any] = {
        "content": "\n".join(lines),
        "total_lines": total,
        "offset": first,
        "returned_lines": returned,
        "truncated": truncated,
    }
    notes = []
    if truncated:
        notes.append(
            f"Showing lines {first}-{end} of {total}; call read_file with offset={end + 1} "
            "to read more."
        )
    if cut:
        notes.append(f"{cut} lines longer than {MAX_LINE_CHARS} characters were cut (marked …).")
    if notes:
        result["note"] = " ".join(notes)
    return result


@dataclass(slots=True)
class _FilePlan:
    name: str
    original: str
    current: str


def _count_and_replace(plan: _FilePlan, old: str, new: str, replace_all: bool) -> None:
    count = plan.current.count(old)
    if count == 0 and "\r\n" in plan.current and "\n" in old and "\r\n" not in old:
        # The model writes "\n"; a file with Windows line endings still matches.
        old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
        count = plan.current.count(old)
    if count == 0:
        raise ToolInputError(f"old_text not found in {plan.name}.")
    if count > 1 and not replace_all:
        raise ToolInputError(
            f"old_text matches {count} places in {plan.name}; include more surrounding lines "
            "to make it unique, or set replace_all."
        )
    plan.current = plan.current.replace(old, new, -1 if replace_all else 1)


def _require_regular(info: os.stat_result, name: str) -> None:
    # A FIFO or a device would block the reading thread, or never end.
    if not stat.S_ISREG(info.st_mode):
        raise ToolInputError(f"{name} is not a regular file.")


def _read_text(path: Path, name: str) -> str:
    _require_regular(os.stat(path), name)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolInputError(f"{name} is not UTF-8 text and cannot be edited.") from None


class FileTools:
    """The handlers of the four file tools for one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    async def read_file(self, args: Arguments) -> ToolResponse:
        path = self.workspace.resolve(args.text("path"))
        request = _ReadRequest(
            path=path,
            name=self.workspace.display_path(path),
            ranged=args.has("offset") or args.has("limit"),
            offset=args.integer("offset", default=1, minimum=1),
            limit=args.integer("limit", default=DEFAULT_READ_LINES, minimum=1),
        )
        return ToolResponse.text(json_text(await asyncio.to_thread(_read_lines, request)))

    async def write_file(self, args: Arguments) -> ToolResponse:
        path = self.workspace.resolve(args.text("path"))
        data = args.text("content").encode("utf-8", "surrogateescape")
        if len(data) > MAX_WRITE_BYTES:
            raise ToolInputError(
                f"content is {len(data)} bytes, over the {MAX_WRITE_BYTES} byte limit "
                "of write_file."
            )
        if path.is_dir():
            raise ToolInputError(f"{self.workspace.display_path(path)} is a directory.")
        await asyncio.to_thread(atomic_write, path, data)
        return ToolResponse.text(json_text({"ok": True, "bytes_written": len(data)}))

    async def edit_files(self, args: Arguments) -> ToolResponse:
        try:
            plans = await self._plan_edits(args)
        except ToolInputError as err:
            raise ToolInputError(f"{err} {_NOT_APPLIED}") from None
        except OSError as err:
            raise ToolInputError(
                f"{describe_os_error(self.workspace, err)} {_NOT_APPLIED}"
            ) from None
        files = []
        for path, plan in plans.items():
            await asyncio.to_thread(atomic_write, path, plan.current.encode("utf-8"))
            diff = "".join(
                difflib.unified_diff(
                    plan.original.splitlines(keepends=True),
                    plan.current.splitlines(keepends=True),
                    fromfile=f"a/{plan.name}",
                    tofile=f"b/{plan.name}",
                )
            )
            files.append({"path": plan.name, "diff": cap_text(diff).text})
        return ToolResponse.text(json_text({"ok": True, "files": files}))

    async def _plan_edits(self, args: Arguments) -> dict[Path, _FilePlan]:
        edits = args.items("edits")
        if not edits:
            raise ToolInputError("edits must list at least one edit.")
        plans: dict[Path, _FilePlan] = {}
        for index, raw in enumerate(edits, start=1):
            if not isinstance(raw, dict):
                raise ToolInputError(f"edit {index} must be an object.")
            edit = Arguments(raw)
            path = self.workspace.resolve(edit.text("path"))
            old, new = edit.text("old_text"), edit.text("new_text")
            if not old:
                raise ToolInputError(f"edit {index}: old_text must not be empty.")
            if old == new:
                raise ToolInputError(f"edit {index}: new_text is the same as old_text.")
            plan = plans.get(path)
            if plan is None:
                name = self.workspace.display_path(path)
                text = await asyncio.to_thread(_read_text, path, name)
                plan = plans[path] = _FilePlan(name=name, original=text, current=text)
            _count_and_replace(plan, old, new, edit.flag("replace_all"))
        return plans

    async def attach_file(self, args: Arguments) -> ToolResponse:
        path = self.workspace.resolve(args.text("path"))
        name = self.workspace.display_path(path)
        info = await asyncio.to_thread(os.stat, path)
        if stat.S_ISDIR(info.st_mode):
            raise ToolInputError(f"{name} is a directory.")
        _require_regular(info, name)
        size = info.st_size
        if size > MAX_ATTACH_BYTES:
            raise ToolInputError(
                f"{name} is {size} bytes, over the {MAX_ATTACH_BYTES} byte limit of attach_file."
            )
        media_type = args.text("media_type", default="") or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        data = await asyncio.to_thread(path.read_bytes)
        return ToolResponse.media(data, media_type, caption=name)


def describe_os_error(workspace: Workspace, err: OSError) -> str:
    """What the model is told about a file-system error, naming the file as it sees it."""
    name = workspace.display_path(os.fsdecode(err.filename)) if err.filename else "the file"
    if isinstance(err, FileNotFoundError):
        return f"File not found: {name}"
    if isinstance(err, IsADirectoryError):
        return f"{name} is a directory."
    if isinstance(err, NotADirectoryError):
        return f"A parent of {name} is not a directory."
    if isinstance(err, PermissionError):
        return f"Permission denied: {name}"
    return f"{err.strerror or err}: {name}"
