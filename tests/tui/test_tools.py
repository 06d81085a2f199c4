"""`chatd chat --tools` and `/tools` against a live replica."""

from __future__ import annotations

import re
from pathlib import Path

from chatd.client._tools import BUILTIN_TOOLS, FILE_TOOLS, tools_for_level
from chatd.tools import BUILTIN_TOOL_NAMES, allowed_builtin_tools
from tests.service.conftest import LiveReplica
from tests.tui.test_chat_command import Terminal, only_chat

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_client_names_the_same_tools_as_the_server() -> None:
    assert BUILTIN_TOOLS == BUILTIN_TOOL_NAMES
    assert set(FILE_TOOLS) == allowed_builtin_tools("files")
    assert tools_for_level("none") == []


async def test_tools_all_creates_a_chat_with_every_builtin_tool(
    live: LiveReplica, tmp_path: Path
) -> None:
    plain = await live.scripted_model("plain", script=[{"text": "nothing to run"}])
    token = await live.token("tia")
    user = await live.store.get_user_by_name("tia")
    await live.store.set_tool_policy(user.id, "all")
    term = Terminal(live, token, tmp_path, "--tools", "all", "--model", plain)
    try:
        await term.expect("you> ")
        term.child.sendline("/tools")
        await term.expect("your next message starts one with read_file, write_file")
        await term.expect("you> ")
        term.child.sendline("hello with tools")
        await term.expect("nothing to run")
        await term.expect("you> ")
        term.child.sendline("/tools")
        await term.expect("tools: all (read_file, write_file, edit_files, execute")
        await term.expect("you> ")
        term.child.sendline("/help")
        await term.expect("show the chat's built-in tools")
        await term.quit()
    finally:
        term.close()
    chat = await only_chat(live, token)
    assert chat["tools"]["builtin"] == list(BUILTIN_TOOL_NAMES)


async def test_a_refused_tools_level_prints_one_line_and_the_client_stays(
    live: LiveReplica, tmp_path: Path
) -> None:
    token = await live.token("ned")  # the deployment's default policy: files only
    term = Terminal(live, token, tmp_path, "--tools", "all")
    try:
        await term.expect("you> ")
        term.child.sendline("run something")
        await term.expect("error [tool_not_allowed] HTTP 422: ")
        shown = ANSI.sub("", await term.expect("you> "))
        assert shown.strip(), "the refusal says why"
        assert shown.strip().count("\n") == 0, f"more than one line: {shown!r}"
        assert "Traceback" not in shown
        assert term.child.isalive()
        await term.quit()
    finally:
        term.close()
    async with live.client(token) as client:
        assert (await client.get("/api/chats")).json()["chats"] == []


async def test_tools_is_ignored_with_a_note_for_an_existing_chat(
    live: LiveReplica, tmp_path: Path
) -> None:
    token = await live.token("uma")
    async with live.client(token) as client:
        chat = (await client.post("/api/chats", json={"message": "no tools"})).json()
    term = Terminal(live, token, tmp_path, chat["id"], "--tools", "files")
    try:
        await term.expect("note: --tools is for new chats")
        await term.expect("you> ")
        term.child.sendline("/tools")
        await term.expect("This chat has no built-in tools.")
        await term.quit()
    finally:
        term.close()
