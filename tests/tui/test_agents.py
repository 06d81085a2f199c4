"""`chatd chat` on a chat with agents: it follows the parent while its agents work,
showing each one's status, then `/agents` lists them and `/open` opens one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.service.conftest import LiveReplica
from tests.service.test_turns import wait_status
from tests.tui.test_chat_command import Terminal

TOOLS = {"builtin": ["read_file", "write_file"]}


async def test_the_terminal_follows_a_parent_through_its_agents_and_opens_one(
    live: LiveReplica, tmp_path: Path
) -> None:
    paced = await live.scripted_model("paced", delta_delay=0.1)
    lines = [
        f"/call spawn_agent {json.dumps({'prompt': p, 'model': paced})}"
        for p in ("count the apples", "count the pears")
    ]
    token = await live.token("tia")
    async with live.client(token) as client:
        created = await client.post(
            "/api/chats",
            json={"message": "\n".join([*lines, "/call wait_agent {}"]), "tools": TOOLS},
        )
        assert created.status_code == 201, created.text
        parent_id = created.json()["id"]
        await wait_status(client, parent_id, "requires_action")
        children = (await client.get(f"/api/chats/{parent_id}")).json()["children"]

    term = Terminal(live, token, tmp_path, parent_id)
    try:
        await term.expect("of 2 agents… (Ctrl-C interrupts)")
        await term.expect("Count the apples")
        # Once both answer, the parent resumes and answers; then the prompt is back.
        await term.expect('"timed_out": false')
        await term.expect("you> ")
        async with live.client(token) as client:
            await wait_status(client, parent_id, "waiting")

        term.child.sendline("/agents")
        for child, title in zip(children, ("Count the apples", "Count the pears"), strict=True):
            await term.expect(child["id"])
            shown = await term.expect(title)
            assert "[waiting]" in shown  # (coloured)
        await term.expect("you> ")
        term.child.sendline(f"/open {children[0]['id']}")
        await term.expect("Opened Count the apples [waiting].")
        await term.expect("you> ")
        term.child.sendline("/agents")
        await term.expect(f"This chat is an agent of {parent_id}")
        await term.expect("you> ")
        term.child.sendline("/open")
        await term.expect("Use: /open CHAT_ID")
        term.child.sendline(f"/open {parent_id}x")  # not a chat of hers: one line, no trace
        await term.expect("error [not_found] HTTP 404")
        await term.expect("you> ")
        term.child.sendline("/agents")  # still on the agent's chat
        await term.expect(f"This chat is an agent of {parent_id}")
        await term.quit()
    finally:
        term.close()
