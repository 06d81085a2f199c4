"""edit_files: exact search/replace, in order, all-or-nothing across files."""

from __future__ import annotations

from chatd.loop import Tool
from chatd.tools import Workspace

from .helpers import call, error, result


def edit(path: str, old: str, new: str, **extra: object) -> dict[str, object]:
    return {"path": path, "old_text": old, "new_text": new, **extra}


async def test_applies_edits_in_order_and_returns_a_diff(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "a.py").write_text("x = 1\ny = 2\n")
    got = result(
        await call(
            tools,
            "edit_files",
            edits=[edit("a.py", "x = 1", "x = 10"), edit("a.py", "x = 10\ny", "x = 10\nz")],
        )
    )
    assert (workspace.root / "a.py").read_text() == "x = 10\nz = 2\n"
    assert got["ok"] is True
    [file] = got["files"]
    assert file["path"] == "a.py"
    assert "-x = 1\n-y = 2\n+x = 10\n+z = 2\n" in file["diff"]


async def test_missing_search_text_is_an_error_and_nothing_changes(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "a.txt").write_text("alpha\n")
    (workspace.root / "b.txt").write_text("beta\n")
    message = error(
        await call(
            tools,
            "edit_files",
            edits=[edit("a.txt", "alpha", "ALPHA"), edit("b.txt", "gamma", "GAMMA")],
        )
    )
    assert message == "old_text not found in b.txt. No edits were applied."
    assert (workspace.root / "a.txt").read_text() == "alpha\n"
    assert (workspace.root / "b.txt").read_text() == "beta\n"


async def test_ambiguous_search_text_names_the_number_of_matches(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "a.txt").write_text("x\nx\nx\n")
    message = error(await call(tools, "edit_files", edits=[edit("a.txt", "x", "y")]))
    assert "matches 3 places in a.txt" in message
    assert message.endswith("No edits were applied.")
    assert (workspace.root / "a.txt").read_text() == "x\nx\nx\n"


async def test_replace_all_replaces_every_match(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "a.txt").write_text("x\nx\nx\n")
    result(await call(tools, "edit_files", edits=[edit("a.txt", "x", "y", replace_all=True)]))
    assert (workspace.root / "a.txt").read_text() == "y\ny\ny\n"


async def test_edits_across_files_all_apply(tools: dict[str, Tool], workspace: Workspace) -> None:
    (workspace.root / "a").write_text("1")
    (workspace.root / "b").write_text("2")
    got = result(
        await call(tools, "edit_files", edits=[edit("a", "1", "one"), edit("b", "2", "two")])
    )
    assert [f["path"] for f in got["files"]] == ["a", "b"]
    assert (workspace.root / "a").read_text() == "one"
    assert (workspace.root / "b").read_text() == "two"


async def test_windows_line_endings_still_match(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result(await call(tools, "edit_files", edits=[edit("w.txt", "one\ntwo", "1\n2")]))
    assert (workspace.root / "w.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


async def test_bad_edits_are_refused_with_nothing_applied(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "a").write_text("abc")
    cases = {
        "edits must list at least one edit.": [],
        "edit 1: new_text is the same as old_text.": [edit("a", "b", "b")],
        "edit 1: old_text must not be empty.": [edit("a", "", "x")],
        "edit 2 must be an object.": [edit("a", "a", "A"), "nope"],
        "File not found: missing": [edit("missing", "a", "b")],
        "old_text is required": [{"path": "a", "new_text": "x"}],
    }
    for expected, edits in cases.items():
        message = error(await call(tools, "edit_files", edits=edits))
        assert message == f"{expected} No edits were applied.", message
    assert "edits must be a list" in error(await call(tools, "edit_files", edits="a"))
    assert (workspace.root / "a").read_text() == "abc"


async def test_non_utf8_files_are_not_edited(tools: dict[str, Tool], workspace: Workspace) -> None:
    (workspace.root / "latin1").write_bytes("café".encode("latin-1"))
    message = error(await call(tools, "edit_files", edits=[edit("latin1", "caf", "CAF")]))
    assert "not UTF-8 text" in message
