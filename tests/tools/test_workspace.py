"""Confinement: every path a built-in tool touches must resolve inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from chatd.loop import Tool
from chatd.tools import Workspace
from chatd.tools._args import ToolInputError

from .helpers import call, error


def test_relative_and_absolute_paths_inside_resolve(workspace: Workspace) -> None:
    assert workspace.resolve("a/b.txt") == workspace.root / "a" / "b.txt"
    assert workspace.resolve(str(workspace.root / "c")) == workspace.root / "c"
    assert workspace.resolve("a/../b") == workspace.root / "b"
    assert workspace.resolve(".") == workspace.root


@pytest.mark.parametrize("path", ["..", "../other", "a/../../other", "/etc/passwd", "/"])
def test_paths_escaping_the_root_are_refused(workspace: Workspace, path: str) -> None:
    with pytest.raises(ToolInputError, match=r"is outside the workspace\.$"):
        workspace.resolve(path)


def test_symlinks_pointing_out_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (workspace.root / "dir_link").symlink_to(outside)
    (workspace.root / "file_link").symlink_to(outside / "secret")
    (workspace.root / "dangling").symlink_to(outside / "not-yet")
    for path in ("dir_link/secret", "file_link", "dangling", "dir_link/new/file"):
        with pytest.raises(ToolInputError, match="outside the workspace"):
            workspace.resolve(path)


def test_symlinks_inside_the_root_are_followed(workspace: Workspace) -> None:
    (workspace.root / "real").mkdir()
    (workspace.root / "alias").symlink_to(workspace.root / "real")
    assert workspace.resolve("alias/x") == workspace.root / "real" / "x"


def test_empty_and_nul_paths_are_refused(workspace: Workspace) -> None:
    with pytest.raises(ToolInputError, match="must not be empty"):
        workspace.resolve(" ")
    with pytest.raises(ToolInputError, match="NUL"):
        workspace.resolve("a\0b")


def test_workspace_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ws = Workspace(tmp_path / "link")
    assert ws.root == tmp_path / "real"
    assert ws.resolve("f") == tmp_path / "real" / "f"


def test_for_chat_uses_one_directory_per_chat_unless_shared(tmp_path: Path) -> None:
    ws = Workspace.for_chat(tmp_path, "0190a1b2-c3d4")
    assert ws.root == tmp_path / "0190a1b2-c3d4"
    assert ws.root.is_dir()
    assert ws.chat_id == "0190a1b2-c3d4"
    shared = Workspace.for_chat(tmp_path, "0190a1b2-c3d4", shared=True)
    assert shared.root == tmp_path
    with pytest.raises(ValueError, match="cannot name a workspace directory"):
        Workspace.for_chat(tmp_path, "../escape")


def test_display_path_is_relative_inside_the_root(workspace: Workspace) -> None:
    assert workspace.display_path(workspace.root / "a" / "b") == "a/b"
    assert workspace.display_path(workspace.root) == "."
    assert workspace.display_path("/elsewhere") == "/elsewhere"


ESCAPES: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "../outside/secret"}),
    ("write_file", {"path": "../outside/new", "content": "x"}),
    ("edit_files", {"edits": [{"path": "../outside/secret", "old_text": "s", "new_text": "t"}]}),
    ("attach_file", {"path": "../outside/secret"}),
    ("execute", {"command": "true", "workdir": "../outside"}),
]


@pytest.mark.parametrize(("name", "arguments"), ESCAPES, ids=[e[0] for e in ESCAPES])
async def test_every_path_tool_refuses_an_escape_and_touches_nothing(
    tools: dict[str, Tool], workspace: Workspace, name: str, arguments: dict[str, Any]
) -> None:
    outside = workspace.root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    message = error(await call(tools, name, **arguments))
    assert "is outside the workspace." in message
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "s"


async def test_absolute_path_and_symlink_escapes_are_refused_by_the_tools(
    tools: dict[str, Tool], workspace: Workspace, tmp_path: Path
) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep")
    (workspace.root / "link.txt").symlink_to(target)
    assert "outside the workspace" in error(await call(tools, "read_file", path=str(target)))
    assert "outside the workspace" in error(
        await call(tools, "write_file", path="link.txt", content="overwritten")
    )
    assert target.read_text() == "keep"
