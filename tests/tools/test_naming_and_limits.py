"""Small pieces: MCP tool names, server configuration, durations, the output cap, errors."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from chatd.loop import ToolCall, ToolResponse
from chatd.tools import MODEL_OUTPUT_CAP, McpServerConfig, Workspace, mcp_tool_name
from chatd.tools._args import Arguments, ToolInputError, make_tool, parse_duration
from chatd.tools._files import atomic_write, describe_os_error
from chatd.tools._output import OutputCapture, cap_text


def test_mcp_tool_names_are_slug_double_underscore_tool() -> None:
    assert mcp_tool_name("github", "create_issue") == "github__create_issue"
    assert mcp_tool_name("fs", "read.file/v2") == "fs__read_file_v2"


def test_long_mcp_tool_names_are_cut_with_a_hash() -> None:
    name = mcp_tool_name("server", "t" * 80)
    assert len(name) == 64
    assert name.startswith("server__" + "t" * 47 + "_")
    assert name != mcp_tool_name("server", "t" * 81)
    hashed = mcp_tool_name("fs", "a.b", hashed=True)
    assert hashed.startswith("fs__a_b_") and len(hashed) == len("fs__a_b_") + 8


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"slug": "a__b", "transport": "stdio", "command": ("x",)}, "slug"),
        ({"slug": "-a", "transport": "stdio", "command": ("x",)}, "slug"),
        ({"slug": "a", "transport": "stdio"}, "needs a command"),
        ({"slug": "a", "transport": "streamable_http"}, "needs a url"),
        ({"slug": "a", "transport": "stdio", "command": ("x",), "call_timeout_s": 0}, "positive"),
    ],
)
def test_invalid_mcp_server_configurations_are_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        McpServerConfig(**fields)  # type: ignore[arg-type]


def test_mcp_server_filters_deny_wins() -> None:
    server = McpServerConfig(
        slug="s", transport="stdio", command=("x",), allow_tools=("a", "b"), deny_tools=("b",)
    )
    assert [server.offers(n) for n in ("a", "b", "c")] == [True, False, False]
    open_server = McpServerConfig(slug="s", transport="stdio", command=("x",))
    assert open_server.offers("anything")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5), (12, 12), ("7", 7)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "ten", "5x", "s", "1h 2m", True, None, [1], "-1s"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ToolInputError):
        parse_duration(value)


def test_cap_text_keeps_head_and_tail_with_a_marker() -> None:
    short = cap_text("abc")
    assert (short.text, short.truncated, short.truncation()) == ("abc", False, None)
    text = "H" * 20_000 + "T" * 20_000
    capped = cap_text(text)
    assert capped.text == "H" * 16_384 + "\n… [7232 bytes omitted] …\n" + "T" * 16_384
    assert capped.truncation() == {"original_bytes": 40_000, "kept_bytes": MODEL_OUTPUT_CAP}


def test_output_capture_memory_is_bounded() -> None:
    capture = OutputCapture(tail=20_000)
    for _ in range(100):
        capture.write(b"z" * 10_000)
    assert capture.total == 1_000_000
    assert len(capture.render().text.encode()) < MODEL_OUTPUT_CAP + 100
    with pytest.raises(ValueError, match="at least"):
        OutputCapture(tail=10)


def test_tools_all_is_sorted_and_importable() -> None:
    tools = importlib.import_module("chatd.tools")

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2), name

    assert tools.__all__ == sorted(tools.__all__, key=order)
    for name in tools.__all__:
        assert hasattr(tools, name)


def test_importing_chatd_tools_does_not_import_the_mcp_sdk() -> None:
    # In a fresh interpreter: this one has long imported the SDK for other tests.
    code = "import sys, chatd.tools; sys.exit('mcp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_a_file_tool_past_its_time_bound_is_an_error_result() -> None:
    async def slow(_args: Arguments) -> ToolResponse:
        await asyncio.sleep(10)
        return ToolResponse.text("late")

    tool = make_tool("slow", "", {}, slow, describe_os_error=str, timeout=0.01)
    response = await tool.run(ToolCall("c", "slow", "{}"))
    assert (response.is_error, response.content) == (True, "slow timed out after 0.01 s")


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "child").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_os_errors_name_the_file_as_the_model_sees_it(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    inside = str(tmp_path / "a" / "b")
    cases = {
        NotADirectoryError(20, "Not a directory", inside): "A parent of a/b is not a directory.",
        PermissionError(13, "Permission denied", inside): "Permission denied: a/b",
        OSError(28, "No space left on device", inside): "No space left on device: a/b",
        OSError(5, "I/O error"): "I/O error: the file",
    }
    for err, message in cases.items():
        assert describe_os_error(workspace, err) == message
