"""write_file: creates parents, replaces atomically, keeps the mode, caps the size."""

from __future__ import annotations

import os
import stat

from chatd.loop import Tool
from chatd.tools import Workspace
from chatd.tools._files import MAX_WRITE_BYTES

from .helpers import call, error, result


async def test_creates_the_file_and_its_parent_directories(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    got = result(await call(tools, "write_file", path="a/b/c.txt", content="héllo\n"))
    assert got == {"ok": True, "bytes_written": len("héllo\n".encode())}
    assert (workspace.root / "a" / "b" / "c.txt").read_text() == "héllo\n"


async def test_overwrites_through_a_rename_and_keeps_the_mode(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    target = workspace.root / "script.sh"
    target.write_text("old")
    target.chmod(0o750)
    inode = target.stat().st_ino
    result(await call(tools, "write_file", path="script.sh", content="new"))
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert target.stat().st_ino != inode  # a new file was renamed into place
    assert os.listdir(workspace.root) == ["script.sh"]  # no temporary file left behind


async def test_content_over_1_mib_is_refused(tools: dict[str, Tool], workspace: Workspace) -> None:
    message = error(
        await call(tools, "write_file", path="big", content="x" * (MAX_WRITE_BYTES + 1))
    )
    assert "over the 1048576 byte limit" in message
    assert not (workspace.root / "big").exists()


async def test_a_directory_is_not_overwritten(tools: dict[str, Tool], workspace: Workspace) -> None:
    (workspace.root / "d").mkdir()
    assert "is a directory" in error(await call(tools, "write_file", path="d", content="x"))
    assert "content is required" in error(await call(tools, "write_file", path="f"))


async def test_writing_under_a_file_is_an_error_result(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "plain").write_text("x")
    message = error(await call(tools, "write_file", path="plain/child", content="y"))
    assert "plain" in message
