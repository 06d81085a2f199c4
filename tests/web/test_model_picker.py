"""The model picker shows each chat's own model, and a send never changes it unasked."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.web.conftest import Ui


async def _config(ui: Ui, name: str, *, is_default: bool = False) -> str:
    script = [{"text": f"from {name}"}]
    config = await ui.live.store.create_model_config(
        name, "scripted", name, options={"script": script}, is_default=is_default
    )
    return config.id


def _replies(messages: list[dict[str, Any]]) -> list[str]:
    return [
        "".join(p["text"] for p in m["parts"] if p["type"] == "text")
        for m in messages
        if m["role"] == "assistant"
    ]


async def test_switching_chats_shows_and_keeps_each_chats_own_model(ui: Ui) -> None:
    xray = await _config(ui, "xray")
    yankee = await _config(ui, "yankee")
    await _config(ui, "zulu", is_default=True)
    async with ui.live.client(ui.token) as client:
        created = {
            name: (await client.post("/api/chats", json={"message": "hi", **body})).json()
            for name, body in {
                "A": {"title": "Chat A", "model": "xray"},
                "B": {"title": "Chat B"},  # no model of its own: the deployment default
                "C": {"title": "Chat C", "model": "yankee"},
            }.items()
        }
    own = {"A": (xray, "xray (scripted:xray)"), "B": ("", "Default: zulu (scripted:zulu)")}
    own["C"] = (yankee, "yankee (scripted:yankee)")
    reply = {"A": "from xray", "B": "from zulu", "C": "from yankee"}
    page = ui.page
    picker = page.get_by_label("Model", exact=True)
    assistant = page.locator("#messages .message.assistant")

    await page.goto(f"{ui.base_url}/#/chat/{created['A']['id']}")
    # B (no model) right after A, and A again after C: each time the previous chat's
    # model must not stay in the picker, nor reach the chat with the next send.
    for name in ("A", "B", "C", "B", "A"):
        await page.locator(f'#chat-list [data-chat-id="{created[name]["id"]}"]').click()
        await expect(page.locator("#chat-title")).to_have_text(f"Chat {name}")
        value, label = own[name]
        await expect(picker).to_have_value(value)
        await expect(picker.locator("option:checked")).to_have_text(label)
        await expect(page.locator("#chat-status")).to_have_text("waiting")
        before = await assistant.count()
        await page.get_by_label("Message", exact=True).fill(f"again in {name}")
        await page.get_by_role("button", name="Send", exact=True).click()
        await expect(assistant).to_have_count(before + 1)
        await expect(assistant.last).to_contain_text(reply[name])
        await expect(page.locator("#chat-status")).to_have_text("waiting")
        await expect(picker).to_have_value(value)

    async with ui.live.client(ui.token) as client:
        for name, chat in created.items():
            now = (await client.get(f"/api/chats/{chat['id']}")).json()
            assert now["model_config_id"] == chat["model_config_id"], name
            messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()
            sends = 3 if name in ("A", "B") else 2
            assert _replies(messages["messages"]) == [reply[name]] * sends, name
    assert created["B"]["model_config_id"] is None


async def test_a_new_chat_starts_on_the_default_and_keeps_the_model_picked_for_it(
    ui: Ui,
) -> None:
    xray = await _config(ui, "xray")
    await _config(ui, "zulu", is_default=True)
    page = ui.page
    picker = page.get_by_label("Model", exact=True)
    await page.reload()
    await expect(picker.locator("option:checked")).to_have_text("Default: zulu (scripted:zulu)")
    chat_id = await ui.start_chat("pinned", "xray")
    await expect(picker).to_have_value(xray)
    await expect(page.locator("#messages .message.assistant")).to_contain_text("from xray")

    await page.get_by_role("button", name="New chat").click()
    await expect(picker).to_have_value("")
    await page.get_by_label("Message", exact=True).fill("on the default")
    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_url(lambda url: not url.endswith(chat_id) and "/#/chat/" in url)
    await expect(page.locator("#messages .message.assistant")).to_contain_text("from zulu")
    await expect(picker).to_have_value("")
    async with ui.live.client(ui.token) as client:
        pinned = (await client.get(f"/api/chats/{chat_id}")).json()
        default = (await client.get(f"/api/chats/{page.url.rsplit('/', 1)[1]}")).json()
    assert (pinned["model_config_id"], default["model_config_id"]) == (xray, None)
