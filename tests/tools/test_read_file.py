"""read_file: numbered lines, ranges, the 1 MiB whole-file cap, long lines, binary files."""

from __future__ import annotations

import os

from chatd.loop import Tool
from chatd.tools import Workspace
from chatd.tools._files import MAX_LINE_CHARS, MAX_READ_BYTES

from .helpers import call, error, result


async def test_reads_a_whole_file_with_line_numbers(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "f.txt").write_text("alpha\nbeta\r\ngamma")
    got = result(await call(tools, "read_file", path="f.txt"))
    assert got == {
        "content": "     1\talpha\n     2\tbeta\n     3\tgamma",
        "total_lines": 3,
        "offset": 1,
        "returned_lines": 3,
        "truncated": False,
    }


async def test_reads_a_line_range_and_says_where_to_continue(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "f.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    got = result(await call(tools, "read_file", path="f.txt", offset=4, limit=3))
    assert got["content"] == "     4\tline 4\n     5\tline 5\n     6\tline 6"
    assert (got["total_lines"], got["offset"], got["returned_lines"]) == (10, 4, 3)
    assert got["truncated"] is True
    assert "offset=7" in got["note"]


async def test_offset_past_the_end_is_an_error(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "f.txt").write_text("one\ntwo\n")
    assert "past the end" in error(await call(tools, "read_file", path="f.txt", offset=3))


async def test_empty_file_reads_as_no_lines(tools: dict[str, Tool], workspace: Workspace) -> None:
    (workspace.root / "empty").write_text("")
    got = result(await call(tools, "read_file", path="empty"))
    assert (got["content"], got["total_lines"], got["truncated"]) == ("", 0, False)


async def test_default_limit_is_2000_lines(tools: dict[str, Tool], workspace: Workspace) -> None:
    (workspace.root / "many").write_text("x\n" * 2500)
    got = result(await call(tools, "read_file", path="many"))
    assert got["returned_lines"] == 2000
    assert got["truncated"] is True
    assert "Showing lines 1-2000 of 2500" in got["note"]


async def test_long_lines_are_cut_and_the_cut_is_stated(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "wide").write_text("y" * (MAX_LINE_CHARS + 50) + "\nshort\n")
    got = result(await call(tools, "read_file", path="wide"))
    first = got["content"].splitlines()[0]
    assert first == "     1\t" + "y" * MAX_LINE_CHARS + "…"
    assert "1 lines longer than 2000 characters were cut" in got["note"]


async def test_files_over_1_mib_need_a_range(tools: dict[str, Tool], workspace: Workspace) -> None:
    line = "z" * 99 + "\n"
    (workspace.root / "huge").write_text(line * (MAX_READ_BYTES // len(line) + 10))
    message = error(await call(tools, "read_file", path="huge"))
    assert "over the 1048576 byte limit" in message
    assert "offset and limit" in message
    got = result(await call(tools, "read_file", path="huge", offset=10, limit=2))
    assert got["returned_lines"] == 2
    assert got["total_lines"] == MAX_READ_BYTES // len(line) + 10


async def test_a_range_never_returns_more_than_1_mib(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "wide-lines").write_text(("w" * 1999 + "\n") * 1000)
    got = result(await call(tools, "read_file", path="wide-lines", limit=1000))
    assert len(got["content"].encode()) <= MAX_READ_BYTES
    assert got["truncated"] is True
    assert got["returned_lines"] < 1000


async def test_binary_files_are_refused_with_a_hint(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "blob.bin").write_bytes(b"\x89PNG\0\0\0")
    assert "attach_file" in error(await call(tools, "read_file", path="blob.bin"))


async def test_missing_file_directory_and_bad_arguments_are_error_results(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "d").mkdir()
    (workspace.root / "f").write_text("x")
    assert error(await call(tools, "read_file", path="nope.txt")) == "File not found: nope.txt"
    assert "is a directory" in error(await call(tools, "read_file", path="d"))
    assert error(await call(tools, "read_file")) == "path is required"
    assert error(await call(tools, "read_file", path=3)) == "path must be a string"
    assert "at least 1" in error(await call(tools, "read_file", path="f", offset=0))
    assert "must be an integer" in error(await call(tools, "read_file", path="f", limit="all"))


async def test_input_that_is_not_a_json_object_is_an_error_result(
    tools: dict[str, Tool],
) -> None:
    from chatd.loop import ToolCall

    response = await tools["read_file"].run(ToolCall("c", "read_file", "[1, 2]"))
    assert response.is_error
    assert "not a JSON object" in response.content


async def test_special_files_are_refused_instead_of_blocking(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    os.mkfifo(workspace.root / "pipe")
    assert error(await call(tools, "read_file", path="pipe")) == "pipe is not a regular file."
    assert error(await call(tools, "attach_file", path="pipe")) == "pipe is not a regular file."
    edit = {"path": "pipe", "old_text": "a", "new_text": "b"}
    message = error(await call(tools, "edit_files", edits=[edit]))
    assert message == "pipe is not a regular file. No edits were applied."
