"""Sub-agents in the UI: a parent's agents nest under it in the sidebar and show in
the open chat with their live status, each a link into the agent, which links back."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.service.test_turns import wait_status
from tests.web.conftest import Ui
from tests.web.test_actions import assert_every_control_labelled

TOOLS = {"builtin": ["read_file", "write_file"]}


async def test_agents_nest_under_their_parent_with_live_status_and_links(ui: Ui) -> None:
    paced = await ui.live.scripted_model("paced", delta_delay=0.1)
    lines = [
        f"/call spawn_agent {json.dumps({'prompt': p, 'model': paced})}"
        for p in ("count the apples", "count the pears")
    ]
    async with ui.live.client(ui.token) as client:
        created = await client.post(
            "/api/chats",
            json={"message": "\n".join([*lines, "/call wait_agent {}"]), "tools": TOOLS},
        )
        assert created.status_code == 201, created.text
        parent_id = created.json()["id"]
    page = ui.page
    await page.goto(f"{ui.base_url}/#/chat/{parent_id}")

    # The open parent: its agents, working, while it waits for them.
    agents = page.get_by_role("navigation", name="Agents")
    links = agents.get_by_role("link")
    await expect(links).to_have_count(2, timeout=20_000)
    await expect(links.first).to_contain_text("Count the apples")
    await expect(links.first.locator(".badge")).to_have_text("running", timeout=20_000)
    await expect(page.locator("#chat-status")).to_have_text("waiting for agents")
    await expect(page.locator("#status-line")).to_contain_text("Waiting for 2 of 2 agents")
    await expect(page.locator("#action-required")).to_be_hidden()

    # The sidebar nests them under the parent.
    nested = page.locator("#chat-list .chat-children .chat-item")
    await expect(nested).to_have_count(2, timeout=10_000)
    await expect(nested.first).to_have_attribute("aria-label", "Agent: Count the apples — running")
    await assert_every_control_labelled(page)

    # Live: they finish without a reload, and so does the parent.
    badges = links.locator(".badge")
    await expect(badges).to_have_text(["waiting", "waiting"], timeout=30_000)
    await expect(page.locator("#chat-status")).to_have_text("waiting", timeout=20_000)
    async with ui.live.client(ui.token) as client:
        await wait_status(client, parent_id, "waiting")

    # Each agent is a link into its chat, which links back to the parent.
    await links.first.click()
    await page.wait_for_url("**/#/chat/*")
    child_id = page.url.rsplit("/", 1)[1]
    assert child_id != parent_id
    await expect(page.locator("#chat-title")).to_have_text("Count the apples")
    back = page.locator("#agent-parent")
    await expect(back).to_be_visible()
    await expect(page.locator("#agent-children")).to_be_hidden()
    await back.click()
    await page.wait_for_url(f"**/#/chat/{parent_id}")
    await expect(links).to_have_count(2)
