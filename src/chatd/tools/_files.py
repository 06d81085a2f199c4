"""The file tools: `read_file`, `write_file`, `edit_files`, `attach_file`.

Every path is looked up inside the workspace through `beneath()` (spec §7.2), never
opened by name: the chat's sandboxed commands can swap a directory for a symlink at any
moment, and the lookup and the I/O that follows it run in one worker thread, on fds
that cannot be redirected. Writes go to a temporary file in the same directory and are
renamed over the target, so an interrupted or failed write never leaves a half-written
file; `edit_files` computes every file in memory before writing any. Blocking file I/O
runs in a worker thread so a large file never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import difflib
import mimetypes
import os
import stat
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from chatd.loop import ToolResponse
from chatd.tools._args import Arguments, ToolInputError, json_text
from chatd.tools._beneath import beneath, write_atomically
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
    """Write `data` to `path` through a temporary file and a rename; keeps an existing mode.

    For paths the server alone controls: a workspace path goes through `beneath()`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_atomically(parent, path.name, data, owner=None)
    finally:
        os.close(parent)


@dataclass(slots=True)
class _ReadRequest:
    root: Path
    path: str
    offset: int
    limit: int
    ranged: bool


def _read_lines(request: _ReadRequest) -> dict[str, Any]:
    with beneath(request.root, request.path) as target:
        name = target.display
        directory = f"{name} is a directory; list it with execute (ls)."
        check = partial(_require_regular, name=name, directory=directory)
        with target.open_read(check) as (file, info):
            return _numbered_lines(file, info, request, name)


def _numbered_lines(
    file: BinaryIO, info: os.stat_result, request: _ReadRequest, name: str
) -> dict[str, Any]:
    if info.st_size > MAX_READ_BYTES and not request.ranged:
        raise ToolInputError(
            f"{name} is {info.st_size} bytes, over the {MAX_READ_BYTES} byte limit for reading "
            "a whole file; pass offset and limit to read a range of lines."
        )
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


def _require_regular(info: os.stat_result, *, name: str, directory: str | None = None) -> None:
    """Refuse anything but a regular file; a directory with the `directory` message if given."""
    if directory is not None and stat.S_ISDIR(info.st_mode):
        raise ToolInputError(directory)
    # A FIFO or a device would block the reading thread, or never end.
    if not stat.S_ISREG(info.st_mode):
        raise ToolInputError(f"{name} is not a regular file.")


def _display_name(root: Path, path: str) -> str:
    """Where `path` leads, relative to the root; refuses an escape before anything is read."""
    with beneath(root, path) as target:
        return target.display


def _read_text(root: Path, path: str) -> str:
    with beneath(root, path) as target:
        check = partial(_require_regular, name=target.display)
        with target.open_read(check) as (file, _info):
            data = file.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolInputError(
                f"{target.display} is not UTF-8 text and cannot be edited."
            ) from None


def _write(workspace: Workspace, path: str, data: bytes) -> None:
    with beneath(workspace.root, path) as target:
        target.write(data, workspace.file_owner)


@dataclass(slots=True)
class _Attachment:
    name: str
    guessed_type: str | None
    data: bytes


def _read_attachment(root: Path, path: str) -> _Attachment:
    with beneath(root, path) as target:
        name = target.display
        check = partial(_require_regular, name=name, directory=f"{name} is a directory.")
        with target.open_read(check) as (file, info):
            # Never more than the limit is read, even from a file that grows meanwhile.
            data = file.read(MAX_ATTACH_BYTES + 1)
        size = max(info.st_size, len(data))
        if size > MAX_ATTACH_BYTES:
            raise ToolInputError(
                f"{name} is {size} bytes, over the {MAX_ATTACH_BYTES} byte limit of attach_file."
            )
        return _Attachment(name, mimetypes.guess_type(target.name)[0], data)


class FileTools:
    """The handlers of the four file tools for one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    async def read_file(self, args: Arguments) -> ToolResponse:
        request = _ReadRequest(
            root=self.workspace.root,
            path=args.text("path"),
            ranged=args.has("offset") or args.has("limit"),
            offset=args.integer("offset", default=1, minimum=1),
            limit=args.integer("limit", default=DEFAULT_READ_LINES, minimum=1),
        )
        return ToolResponse.text(json_text(await asyncio.to_thread(_read_lines, request)))

    async def write_file(self, args: Arguments) -> ToolResponse:
        path = args.text("path")
        data = args.text("content").encode("utf-8", "surrogateescape")
        if len(data) > MAX_WRITE_BYTES:
            raise ToolInputError(
                f"content is {len(data)} bytes, over the {MAX_WRITE_BYTES} byte limit "
                "of write_file."
            )
        # A directory is refused as IsADirectoryError: "<path> is a directory."
        await asyncio.to_thread(_write, self.workspace, path, data)
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
        for name, plan in plans.items():
            await asyncio.to_thread(_write, self.workspace, name, plan.current.encode("utf-8"))
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

    async def _plan_edits(self, args: Arguments) -> dict[str, _FilePlan]:
        """Each file's plan, by its name relative to the root (written by that name later)."""
        edits = args.items("edits")
        if not edits:
            raise ToolInputError("edits must list at least one edit.")
        root = self.workspace.root
        plans: dict[str, _FilePlan] = {}
        for index, raw in enumerate(edits, start=1):
            if not isinstance(raw, dict):
                raise ToolInputError(f"edit {index} must be an object.")
            edit = Arguments(raw)
            name = await asyncio.to_thread(_display_name, root, edit.text("path"))
            old, new = edit.text("old_text"), edit.text("new_text")
            if not old:
                raise ToolInputError(f"edit {index}: old_text must not be empty.")
            if old == new:
                raise ToolInputError(f"edit {index}: new_text is the same as old_text.")
            plan = plans.get(name)
            if plan is None:
                text = await asyncio.to_thread(_read_text, root, name)
                plan = plans[name] = _FilePlan(name=name, original=text, current=text)
            _count_and_replace(plan, old, new, edit.flag("replace_all"))
        return plans

    async def attach_file(self, args: Arguments) -> ToolResponse:
        path = args.text("path")
        attachment = await asyncio.to_thread(_read_attachment, self.workspace.root, path)
        media_type = args.text("media_type", default="") or (
            attachment.guessed_type or "application/octet-stream"
        )
        return ToolResponse.media(attachment.data, media_type, caption=attachment.name)


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
