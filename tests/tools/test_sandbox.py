"""The sandbox backends as the tools meet them: a missing bubblewrap, the unsandboxed
mode, and what a workspace looks like to the sandbox user."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chatd.loop import Tool
from chatd.tools import Bubblewrap, SandboxLimits, Unsandboxed, Workspace, builtin_tools

from .conftest import CONFIG
from .helpers import call, error, result


async def test_without_bubblewrap_execute_is_refused_and_says_how_to_install(
    tmp_path: Path,
) -> None:
    sandbox = Bubblewrap(bwrap="/nonexistent/bwrap")
    async with Workspace(tmp_path / "ws", chat_id="c", sandbox=sandbox) as workspace:
        tools = {t.name: t for t in builtin_tools(workspace, CONFIG)}
        refused = error(await call(tools, "execute", command="echo hi"))
        assert "apt-get install bubblewrap" in refused
        assert "Commands cannot run" in refused
        refused = error(await call(tools, "execute", command="sleep 1", run_in_background=True))
        assert "apt-get install bubblewrap" in refused
        # The file tools do not run commands: they keep working.
        assert result(await call(tools, "write_file", path="a.txt", content="x"))["ok"]
        assert "x" in result(await call(tools, "read_file", path="a.txt"))["content"]


async def test_unsandboxed_commands_see_the_host_but_not_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATD_TEST_SECRET", "never-seen")
    async with Workspace(tmp_path / "ws", chat_id="c", sandbox=Unsandboxed()) as workspace:
        tools = {t.name: t for t in builtin_tools(workspace, CONFIG)}
        got = result(await call(tools, "execute", command=f"test -d /proc/{os.getpid()} && env"))
    assert got["success"]  # the host's /proc: not confined
    assert "never-seen" not in got["output"]
    assert f"HOME={workspace.root}" in got["output"]


async def test_a_sandboxed_command_sees_only_its_own_processes_and_no_network(
    tools: dict[str, Tool], workspace: Workspace
) -> None:
    got = result(
        await call(tools, "execute", command="ls /proc | grep -c '^[0-9]'; cat /proc/net/dev")
    )
    count, *net = got["output"].splitlines()
    assert int(count) <= 4  # bwrap's init, the shell, ls and grep
    interfaces = [line.split(":")[0].strip() for line in net if ":" in line]
    assert interfaces == ["lo"]


async def test_the_sandbox_user_owns_the_workspace_when_the_server_is_root(
    tmp_path: Path,
) -> None:
    sandbox = Bubblewrap(SandboxLimits(), host_uid=61234, host_gid=61234)
    async with Workspace(tmp_path / "ws", chat_id="c", sandbox=sandbox) as workspace:
        tools = {t.name: t for t in builtin_tools(workspace, CONFIG)}
        got = result(await call(tools, "execute", command="id -u; touch made-inside; echo ok"))
        written = result(await call(tools, "write_file", path="sub/made-by-tool", content="x"))
    assert written["ok"]
    info = os.stat(workspace.root)
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (61234, 61234, 0o700)
        assert os.stat(workspace.root / "made-inside").st_uid == 61234
        assert os.stat(workspace.root / "sub" / "made-by-tool").st_uid == 61234
        assert os.stat(workspace.root / "sub").st_uid == 61234
    else:  # bwrap maps the sandbox to the server's own user
        assert info.st_uid == os.geteuid()
    assert got["output"] == "1000\nok\n"
    assert json.dumps(got)


async def test_a_workspace_the_sandbox_user_cannot_reach_is_refused_with_the_fix(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        return  # only a root server runs the sandbox as a user of its own
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    sandbox = Bubblewrap(host_uid=61234, host_gid=61234)
    async with Workspace(private / "ws", chat_id="c", sandbox=sandbox) as workspace:
        tools = {t.name: t for t in builtin_tools(workspace, CONFIG)}
        refused = error(await call(tools, "execute", command="true"))
    assert f"chmod o+x {private}" in refused
