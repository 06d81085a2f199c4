"""execute in the foreground: exit codes, timeouts that kill the whole tree, the output cap."""

from __future__ import annotations

import json
import time

import pytest

from chatd.config import load_settings
from chatd.loop import Tool
from chatd.tools import BuiltinToolsConfig, Workspace, builtin_tools

from .conftest import CONFIG
from .helpers import call, error, is_gone_from, result


async def test_runs_a_command_and_interleaves_stdout_and_stderr(tools: dict[str, Tool]) -> None:
    got = result(await call(tools, "execute", command="echo out; echo err >&2; echo out2"))
    assert got["success"] is True
    assert got["exit_code"] == 0
    assert got["output"] == "out\nerr\nout2\n"
    assert isinstance(got["wall_duration_ms"], int)
    assert "truncated" not in got


async def test_a_failing_command_is_a_result_not_a_tool_error(tools: dict[str, Tool]) -> None:
    got = result(await call(tools, "execute", command="echo nope; exit 3"))
    assert (got["success"], got["exit_code"], got["output"]) == (False, 3, "nope\n")


async def test_timeout_kills_the_process_tree(tools: dict[str, Tool], workspace: Workspace) -> None:
    command = "echo started; sleep 30 & echo $! > child.pid; wait"
    started = time.monotonic()
    # 1 s: long enough for a loaded machine to start the shell and its child
    response = await call(tools, "execute", command=command, timeout="1s")
    assert time.monotonic() - started < 5
    got = json.loads(error(response))
    assert got["success"] is False
    assert got["output"] == "started\n"  # the output so far
    assert got["error"] == "command timed out after 1 s; its process group was terminated"
    child = int((workspace.root / "child.pid").read_text())
    assert is_gone_from(workspace, child)


async def test_a_tree_that_ignores_sigterm_is_killed_after_the_grace(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    command = "trap '' TERM; sleep 30 & echo $! > child.pid; wait; wait"
    started = time.monotonic()
    response = await call(tools, "execute", command=command, timeout="1s")
    elapsed = time.monotonic() - started
    assert "timed out" in json.loads(error(response))["error"]
    assert elapsed >= 1 + CONFIG.kill_grace
    assert is_gone_from(workspace, int((workspace.root / "child.pid").read_text()))


async def test_output_over_32_kib_keeps_head_and_tail_and_says_so(tools: dict[str, Tool]) -> None:
    command = "printf BEGIN; head -c 100000 /dev/zero | tr '\\0' x; printf END"
    got = result(await call(tools, "execute", command=command))
    total = 100_000 + len("BEGIN") + len("END")
    assert got["truncated"] == {"original_bytes": total, "kept_bytes": 32 * 1024}
    output = got["output"]
    assert output.startswith("BEGINxxx")
    assert output.endswith("xxxEND")
    assert f"\n… [{total - 32 * 1024} bytes omitted] …\n" in output


async def test_children_left_running_are_stopped(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    command = "sleep 30 & echo $! > child.pid; echo done"
    got = result(await call(tools, "execute", command=command))
    assert got["output"] == "done\n"
    # bubblewrap ends the whole sandbox with its command, before anyone could look.
    assert workspace.sandbox.confined or "left running were stopped" in got["note"]
    assert is_gone_from(workspace, int((workspace.root / "child.pid").read_text()))


async def test_environment_is_non_interactive_and_hides_chatd_settings(
    tools: dict[str, Tool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATD_SECRET_KEY", "do-not-leak")
    command = 'echo "$CHATD_CHAT_ID $GIT_EDITOR $PAGER $TERM ${CHATD_SECRET_KEY:-unset}"'
    got = result(await call(tools, "execute", command=command))
    assert got["output"] == "chat-1 true cat dumb unset\n"


async def test_environment_is_an_allowlist_never_the_servers(
    tools: dict[str, Tool], workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README tells admins to export provider keys for the server: commands never see them.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-do-not-leak")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    monkeypatch.setenv("LANG", "C.UTF-8")
    got = result(await call(tools, "execute", command="env"))
    names = {line.split("=", 1)[0] for line in got["output"].splitlines()}
    assert "do-not-leak" not in got["output"]
    assert names <= {
        *("PATH", "HOME", "LANG", "TMPDIR", "USER", "LOGNAME", "CHATD_CHAT_ID", "PWD", "SHLVL"),
        *("GIT_EDITOR", "GIT_SEQUENCE_EDITOR", "EDITOR", "VISUAL", "GIT_TERMINAL_PROMPT"),
        *("NO_COLOR", "TERM", "PAGER", "GIT_PAGER", "_"),
    }
    assert f"HOME={workspace.root}" in got["output"].splitlines()


async def test_workdir_is_resolved_inside_the_workspace(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "sub").mkdir()
    (workspace.root / "file").write_text("")
    assert result(await call(tools, "execute", command="pwd"))["output"] == f"{workspace.root}\n"
    got = result(await call(tools, "execute", command="pwd", workdir="sub"))
    assert got["output"] == f"{workspace.root / 'sub'}\n"
    assert "not a directory" in error(await call(tools, "execute", command="pwd", workdir="file"))


async def test_timeout_is_clamped_to_the_configured_maximum(workspace: Workspace) -> None:
    config = BuiltinToolsConfig(execute_timeout=1, execute_max_timeout=2)
    tools = {t.name: t for t in builtin_tools(workspace, config)}
    got = result(await call(tools, "execute", command="true", timeout="4h"))
    assert got["note"] == "timeout was clamped to the maximum of 2 s"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"command": " "}, "command must not be empty"),
        ({"command": " & "}, "command must not be empty"),
        ({}, "command is required"),
        ({"command": "true", "timeout": "soon"}, 'timeout must be a duration such as "30s"'),
        ({"command": "true", "timeout": "0s"}, "timeout must be greater than zero"),
        ({"command": "true", "timeout": -1}, "timeout must not be negative"),
        ({"command": "true", "run_in_background": "yes"}, "must be true or false"),
    ],
)
async def test_bad_input_is_an_error_result(
    tools: dict[str, Tool], arguments: dict[str, object], message: str
) -> None:
    assert message in error(await call(tools, "execute", **arguments))


async def test_cat_of_a_file_suggests_read_file(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    (workspace.root / "f").write_text("x\n")
    got = result(await call(tools, "execute", command="cat f"))
    assert "read_file" in got["note"]


async def test_model_intent_goes_to_client_metadata(tools: dict[str, Tool]) -> None:
    response = await call(tools, "execute", command="true", model_intent="i" * 150)
    assert json.loads(response.metadata) == {"model_intent": "i" * 100}


async def test_shell_missing_workdir_is_an_error_result(tools: dict[str, Tool]) -> None:
    assert error(await call(tools, "execute", command="true", workdir="gone")).startswith(
        "workdir gone is not a directory"
    )


def test_config_follows_the_service_settings() -> None:
    settings = load_settings({"CHATD_EXECUTE_TIMEOUT": "30", "CHATD_EXECUTE_MAX_TIMEOUT": "60"})
    config = BuiltinToolsConfig.from_settings(settings)
    assert (config.execute_timeout, config.execute_max_timeout) == (30, 60)
    assert BuiltinToolsConfig.from_settings(load_settings({})) == BuiltinToolsConfig()
    with pytest.raises(ValueError, match="at most the maximum"):
        BuiltinToolsConfig(execute_timeout=90, execute_max_timeout=60)
    with pytest.raises(ValueError, match="kill grace"):
        BuiltinToolsConfig(kill_grace=-1)
