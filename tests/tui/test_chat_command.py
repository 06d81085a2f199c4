"""`chatd chat` in a real pseudo-terminal (pexpect) against a live replica."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pexpect

import chatd
from tests.service.conftest import LiveReplica


class Terminal:
    """A `chatd chat` process; `expect` runs in a thread so the server keeps serving."""

    def __init__(self, live: LiveReplica, token: str, data_dir: Path, *args: str) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(data_dir),
            "TERM": "xterm-256color",
            "CHATD_URL": live.url,
            "CHATD_TOKEN": token,
            "CHATD_DATA_DIR": str(data_dir),
            # The client runs the chatd this test imported, not whichever is installed.
            "PYTHONPATH": str(Path(chatd.__file__).parents[1]),
        }
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "chatd.cli", "chat", *args],
            env=env,
            dimensions=(50, 200),
            encoding="utf-8",
            timeout=20,
        )

    async def expect(self, pattern: str) -> str:
        await asyncio.to_thread(self.child.expect_exact, pattern)
        return str(self.child.before)

    async def quit(self) -> None:
        """`/quit`, and the client exits."""
        self.child.sendline("/quit")
        await asyncio.to_thread(self.child.expect, pexpect.EOF)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


async def only_chat(live: LiveReplica, token: str) -> dict[str, Any]:
    """The user's one chat, as GET /api/chats/{id} shows it."""
    async with live.client(token) as client:
        [listed] = (await client.get("/api/chats")).json()["chats"]
        chat: dict[str, Any] = (await client.get(f"/api/chats/{listed['id']}")).json()
        return chat


async def test_a_turn_streams_and_ctrl_c_interrupts_it_not_the_client(
    live: LiveReplica, tmp_path: Path
) -> None:
    short = " ".join(f"a{i}" for i in range(30))
    long = " ".join(f"w{i}" for i in range(400))
    quick = await live.scripted_model("quick", delta_delay=0.04, script=[{"text": short}])
    slow = await live.scripted_model("slow", delta_delay=0.04, script=[{"text": long}])
    token = await live.token("tia")
    term = Terminal(live, token, tmp_path, "--model", quick)
    try:
        await term.expect("signed in as")
        await term.expect("you> ")
        term.child.sendline("hello terminal")
        await term.expect("Generating… (Ctrl-C interrupts)")  # the live view while streaming
        await term.expect("a29")  # the committed answer
        await term.expect("you> ")

        term.child.sendline(f"/model {slow}")
        await term.expect("Model for the next messages: slow")
        term.child.sendline("now talk for long")
        await term.expect("w10")
        term.child.sendintr()  # Ctrl-C
        await term.expect("Chat interrupted")
        await term.expect("you> ")
        assert term.child.isalive(), "Ctrl-C interrupted the turn, not the client"

        term.child.sendline("/queue")
        await term.expect("The queue is empty.")
        term.child.sendline("/models")
        await term.expect("scripted:slow")
        await term.quit()
        term.child.close()
        assert term.child.exitstatus == 0
    finally:
        term.close()

    async with live.client(token) as client:
        [chat] = (await client.get("/api/chats")).json()["chats"]
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    partial = messages[-1]["parts"][0]["text"]
    assert "w10" in partial and "w399" not in partial, "the interrupted turn kept its partial text"


async def test_model_with_an_unknown_name_lists_the_valid_ones_and_keeps_the_model(
    live: LiveReplica, tmp_path: Path
) -> None:
    quick = await live.scripted_model("quick", script=[{"text": "answered by quick"}])
    token = await live.token("uma")
    term = Terminal(live, token, tmp_path, "--model", quick)
    try:
        await term.expect("you> ")
        term.child.sendline("/model nope")
        await term.expect("No model named 'nope'; the model stays quick. ")
        line = await term.expect("you> ")
        assert "Choose one of: quick, scripted:default" in line
        term.child.sendline("hello")
        await term.expect("answered by quick")  # the next message still uses quick
        await term.expect("you> ")
        term.child.sendline("/model")
        await term.expect("Model for the next messages: the default")
        await term.quit()
    finally:
        term.close()
    chat = await only_chat(live, token)
    assert chat["model"] == "scripted:quick" and chat["last_error"] is None
