"""Plan mode in the UI: the proposed plan as a card with Approve, and a question the
model asks with its choices as buttons."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.service.test_turns import wait_status
from tests.web.conftest import Ui
from tests.web.test_actions import assert_every_control_labelled

TOOLS = {"builtin": ["read_file", "write_file"]}
PLAN = '# Steps\n\n1. Write **hello.txt**.\n2. <img src=x onerror="window.pwned=1"> done'


async def test_the_plan_card_approves_the_plan_and_the_chat_carries_it_out(ui: Ui) -> None:
    propose = f"/call propose_plan {json.dumps({'plan': PLAN})}"
    async with ui.live.client(ui.token) as client:
        created = await client.post(
            "/api/chats", json={"message": propose, "tools": TOOLS, "mode": "plan"}
        )
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        await wait_status(client, chat_id, "waiting")
    page = ui.page
    await page.goto(f"{ui.base_url}/#/chat/{chat_id}")

    card = page.get_by_label("Proposed plan")
    await expect(card.locator("strong")).to_have_text("hello.txt")
    await expect(card).to_contain_text('<img src=x onerror="window.pwned=1"> done')
    approve = page.get_by_role("button", name="Approve the plan")
    await expect(approve).to_be_visible()
    await assert_every_control_labelled(page)
    await approve.click()

    await expect(page.locator("#messages .message.user").last).to_have_text(
        "The plan is approved: carry it out.Edit"
    )
    write = page.locator("#messages details.tool .tool-name", has_text="write_file")
    await expect(write.first).to_be_visible(timeout=20_000)
    await expect(approve).to_be_hidden()
    async with ui.live.client(ui.token) as client:
        chat = await wait_status(client, chat_id, "waiting")
    assert chat["mode"] is None
    assert await page.locator("#messages img").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_a_question_shows_its_choices_as_buttons_and_one_answers_it(ui: Ui) -> None:
    question = {"question": "Which colour?", "choices": ["red", "blue"]}
    async with ui.live.client(ui.token) as client:
        chat_id = (
            await client.post(
                "/api/chats",
                json={"message": f"/call ask_user_question {json.dumps(question)}", "tools": TOOLS},
            )
        ).json()["id"]
    page = ui.page
    await page.goto(f"{ui.base_url}/#/chat/{chat_id}")
    form = page.locator("#action-required")
    await expect(form.locator(".question-text")).to_have_text("Which colour?")
    choices = page.get_by_role("group", name="Choices").get_by_role("button")
    await expect(choices).to_have_text(["red", "blue"])
    await assert_every_control_labelled(page)
    await choices.last.click()
    await expect(form).to_be_hidden()
    async with ui.live.client(ui.token) as client:
        await wait_status(client, chat_id, "waiting")
        messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
    assert messages[-2]["parts"][0]["result"] == {"type": "text", "text": "blue"}
    await expect(page.locator("#messages .message.assistant").last).to_contain_text("blue")
