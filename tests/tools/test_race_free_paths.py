"""The file tools look paths up fd by fd: a sandboxed command swapping a directory for a
symlink, a FIFO, a hard link or a symlink loop can never make them touch a file outside
the workspace, block, or hang."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chatd.loop import Tool, ToolResponse
from chatd.tools import Workspace, builtin_tools
from chatd.tools._beneath import MAX_SYMLINKS

from .conftest import CONFIG
from .helpers import call, error, result

FILE_TOOLS = ("read_file", "write_file", "edit_files", "attach_file")
SECRET = b"SECRET inside\n"  # holds the edits' old_text, so a leaked edit would change it
OWNER = (12345, 12345)
_RENAME_EXCHANGE = 2  # renameat2(2): swap two names atomically
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Swap the names `a` and `b` in one rename: neither is missing at any moment."""
    if _libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


class Swapper(threading.Thread):
    """Keeps exchanging two names (a directory and a symlink) until stopped."""

    def __init__(self, a: Path, b: Path) -> None:
        super().__init__(daemon=True)
        self.a, self.b = a, b
        self.swaps = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            exchange(self.a, self.b)
            self.swaps += 1


def snapshot(top: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under `top`: its mode and, for a file, its bytes."""
    entries: dict[str, tuple[int, bytes | None]] = {}
    for path in [top, *top.rglob("*")]:
        info = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        entries[str(path.relative_to(top))] = (info.st_mode, data)
    return entries


def file_tools(workspace: Workspace) -> dict[str, Tool]:
    return {tool.name: tool for tool in builtin_tools(workspace, CONFIG)}


def arguments_for(name: str, path: str) -> dict[str, Any]:
    if name == "write_file":
        return {"path": path, "content": "written"}
    if name == "edit_files":
        return {"edits": [{"path": path, "old_text": "inside", "new_text": "INSIDE"}]}
    return {"path": path}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "file").write_bytes(SECRET)
    return directory


@pytest.mark.skipif(not hasattr(_libc, "renameat2"), reason="needs renameat2 (Linux, glibc 2.28)")
@pytest.mark.parametrize("link_kind", ["absolute", "relative"])
async def test_a_directory_swapped_for_a_symlink_never_leads_the_tools_outside(
    tools: dict[str, Tool], workspace: Workspace, outside: Path, tmp_path: Path, link_kind: str
) -> None:
    sub = workspace.root / "sub"
    sub.mkdir()
    (sub / "file").write_text("inside\n")
    decoy = workspace.root / "decoy"
    decoy.symlink_to(outside if link_kind == "absolute" else Path("..") / "outside")
    before = snapshot(outside)
    swapper = Swapper(sub, decoy)
    responses: list[tuple[str, ToolResponse]] = []
    swapper.start()
    try:
        deadline = time.monotonic() + 5
        iteration = 0
        while iteration < 300 and time.monotonic() < deadline:
            iteration += 1
            plans: list[tuple[str, dict[str, Any]]] = [
                ("write_file", {"path": "sub/file", "content": f"inside {iteration}\n"}),
                ("edit_files", arguments_for("edit_files", "sub/file")),
                ("read_file", {"path": "sub/file"}),
                ("attach_file", {"path": "sub/file"}),
                ("write_file", {"path": f"sub/new-{iteration}/file", "content": "inside\n"}),
            ]
            for name, arguments in plans:
                responses.append((name, await call(tools, name, **arguments)))
    finally:
        swapper.stopped.set()
        swapper.join()

    assert snapshot(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["outside", "ws"]
    refused = [r for _, r in responses if r.is_error and "outside the workspace" in r.content]
    succeeded = [r for _, r in responses if not r.is_error]
    assert refused, "the swap never took effect; the race was not exercised"
    assert succeeded, "every call was refused; the inside path was never taken"
    for name, response in responses:
        if response.is_error:
            assert "outside the workspace" in response.content or (
                name == "edit_files" and "old_text not found" in response.content
            ), response.content
        elif name == "read_file":
            assert "inside" in result(response)["content"].lower()
        elif name == "attach_file":
            assert b"inside" in response.data.lower()
            assert b"SECRET" not in response.data
        assert "SECRET" not in response.content
    assert swapper.swaps > 100


async def test_a_fifo_is_refused_without_blocking(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    fifo = workspace.root / "pipe"
    os.mkfifo(fifo)
    (workspace.root / "to-pipe").symlink_to("pipe")
    try:
        async with asyncio.timeout(5):
            for path in ("pipe", "to-pipe"):
                for name in ("read_file", "attach_file"):
                    response = await call(tools, name, **arguments_for(name, path))
                    assert error(response) == "pipe is not a regular file."
                response = await call(tools, "edit_files", **arguments_for("edit_files", path))
                assert error(response) == "pipe is not a regular file. No edits were applied."
    finally:
        # A reader stuck in open() would hang the session: a writer lets it go.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    result(await call(tools, "write_file", path="pipe", content="now a file"))
    assert fifo.read_text() == "now a file"  # replaced by the rename, never opened


@pytest.mark.parametrize("name", ["write_file", "edit_files"])
async def test_a_hard_link_to_an_outside_file_is_replaced_not_written_through(
    tools: dict[str, Tool], workspace: Workspace, outside: Path, name: str
) -> None:
    linked = workspace.root / "linked"
    os.link(outside / "file", linked)
    result(await call(tools, name, **arguments_for(name, "linked")))
    assert (outside / "file").read_bytes() == SECRET
    assert (outside / "file").stat().st_nlink == 1
    assert linked.read_text() == {"write_file": "written", "edit_files": "SECRET INSIDE\n"}[name]
    assert linked.stat().st_ino != (outside / "file").stat().st_ino


async def test_symlink_loops_are_error_results(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    root = workspace.root
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    (root / "self").symlink_to("self")
    (root / "d").mkdir()
    (root / "d" / "up").symlink_to(".")
    too_deep = "d/" + "up/" * (MAX_SYMLINKS + 1) + "f"
    for path in ("a", "self/x", too_deep):
        for name in FILE_TOOLS:
            message = error(await call(tools, name, **arguments_for(name, path)))
            assert message.startswith("Too many levels of symbolic links: "), message
    assert sorted(os.listdir(root)) == ["a", "b", "d", "self"]
    assert os.listdir(root / "d") == ["up"]


async def test_forty_symlinks_in_a_row_are_followed_and_forty_one_are_not(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    root = workspace.root
    (root / "file").write_text("end of the chain")
    (root / f"l{MAX_SYMLINKS}").symlink_to("file")
    for n in range(MAX_SYMLINKS - 1, -1, -1):
        (root / f"l{n}").symlink_to(f"l{n + 1}")
    got = result(await call(tools, "read_file", path="l1"))
    assert got["content"] == "     1\tend of the chain"
    message = error(await call(tools, "read_file", path="l0"))
    assert message == "Too many levels of symbolic links: l0"


def escapes(workspace: Workspace, outside: Path) -> list[str]:
    """Paths that leave the workspace, each in its own way (the links are made here)."""
    root = workspace.root
    (root / "sub").mkdir()
    (root / "dir_link").symlink_to(outside)
    (root / "rel_link").symlink_to(Path("..") / "outside")
    (root / "file_link").symlink_to(outside / "file")
    (root / "sub" / "deep_link").symlink_to(Path("..") / ".." / "outside" / "file")
    (root / "dangling").symlink_to(outside / "new")
    (root / "to_root").symlink_to(root)
    return [
        "../outside/file",
        "sub/../../outside/file",
        "missing/../../outside/file",
        "to_root/../outside/file",
        str(outside / "file"),
        f"{root}/../outside/file",
        "/",
        "dir_link/file",
        "dir_link/new",
        "rel_link/file",
        "file_link",
        "sub/deep_link",
        "dangling",
    ]


@pytest.mark.parametrize("name", FILE_TOOLS)
async def test_every_escape_is_refused_by_every_file_tool(
    tools: dict[str, Tool], workspace: Workspace, outside: Path, name: str
) -> None:
    paths = escapes(workspace, outside)
    before = snapshot(outside)
    for path in paths:
        message = error(await call(tools, name, **arguments_for(name, path)))
        assert message.startswith(f"Path {path} is outside the workspace."), message
    assert snapshot(outside) == before
    assert not (workspace.root / "missing").exists()


async def test_paths_through_links_that_stay_inside_still_work(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    root = workspace.root
    (root / "real").mkdir()
    (root / "abs_alias").symlink_to(root / "real")
    (root / "rel_alias").symlink_to("real")
    (root / "new_link").symlink_to(root / "real" / "created.txt")
    result(await call(tools, "write_file", path="new_link", content="made"))
    assert (root / "real" / "created.txt").read_text() == "made"
    assert (root / "new_link").is_symlink()  # followed to its target, not replaced
    got = result(await call(tools, "read_file", path=f"{root}/abs_alias/../rel_alias/created.txt"))
    assert got["content"] == "     1\tmade"
    media = await call(tools, "attach_file", path="rel_alias/./created.txt")
    assert (media.is_error, media.content) == (False, "real/created.txt")


def _umask() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("Umask:"))
    return int(line.split()[1], 8)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")
async def test_files_and_directories_written_belong_to_the_file_owner(tmp_path: Path) -> None:
    async with Workspace(tmp_path / "ws", file_owner=OWNER) as workspace:
        tools = file_tools(workspace)
        root = workspace.root
        (root / "kept").mkdir()
        script = root / "kept" / "script.sh"
        script.write_text("old\n")
        script.chmod(0o750)
        result(await call(tools, "write_file", path="a/b/c.txt", content="new"))
        for path in (root / "a", root / "a" / "b", root / "a" / "b" / "c.txt"):
            info = path.stat()
            assert (info.st_uid, info.st_gid) == OWNER, path
        assert stat.S_IMODE((root / "a").stat().st_mode) == 0o777 & ~_umask()
        edit = {"path": "kept/script.sh", "old_text": "old", "new_text": "new"}
        result(await call(tools, "edit_files", edits=[edit]))
        info = script.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (*OWNER, 0o750)
        assert script.read_text() == "new\n"
        assert ((root / "kept").stat().st_uid, root.stat().st_uid) == (0, 0)  # not created


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")
async def test_set_id_bits_are_kept_only_for_the_same_owner(tmp_path: Path) -> None:
    async with Workspace(tmp_path / "ws", file_owner=OWNER) as workspace:
        tools = file_tools(workspace)
        same, other = workspace.root / "same", workspace.root / "other"
        for path, owner in ((same, OWNER), (other, (54321, 54321))):
            path.write_text("x")
            os.chown(path, *owner)
            path.chmod(0o6755)
            result(await call(tools, "write_file", path=path.name, content="y"))
        assert stat.S_IMODE(same.stat().st_mode) == 0o6755
        assert stat.S_IMODE(other.stat().st_mode) == 0o755
        assert (other.stat().st_uid, other.stat().st_gid) == OWNER


async def test_a_missing_parent_is_a_file_not_found_result(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "plain").write_text("x")
    for name in ("read_file", "attach_file"):
        message = error(await call(tools, name, path="no/such/file"))
        assert message == "File not found: no/such/file"
        message = error(await call(tools, name, path="plain/child"))
        assert message == "A parent of plain/child is not a directory."
    assert os.listdir(workspace.root) == ["plain"]
