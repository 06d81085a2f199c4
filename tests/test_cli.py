"""The command line as a user runs it."""

from __future__ import annotations

from typer.testing import CliRunner

from chatd import __version__
from chatd.cli import app


def test_demo_streams_a_turn_with_a_tool_call() -> None:
    result = CliRunner().invoke(app, ["demo", "--delay", "0", "--message", "hello there"])
    assert result.exit_code == 0, result.output
    assert "hello there" in result.output
    assert "system_info" in result.output
    assert "2 steps committed" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_bad_option_gives_a_one_line_error_not_a_traceback() -> None:
    result = CliRunner().invoke(app, ["demo", "--delay", "-1"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
