"""The chat's cost and tokens in the header, from a priced model config."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.web.conftest import Ui

PRICES = {"input_price_per_million_tokens": "1000", "output_price_per_million_tokens": "2000"}


async def test_the_header_shows_the_chats_cost_and_tokens_after_each_turn(ui: Ui) -> None:
    await ui.live.store.create_model_config(
        "priced",
        "scripted",
        "priced",
        options={"script": [{"text": "a priced reply"}]},
        pricing=PRICES,
    )
    page = ui.page
    chat_id = await ui.start_chat("what does this cost", model="priced")
    await expect(page.locator("#messages .message.assistant").last).to_contain_text(
        "a priced reply", timeout=20_000
    )
    cost = await chat_cost(ui, chat_id)
    assert cost["cost_micros"] > 0
    dollars = usd(cost["cost_micros"])
    badge = page.get_by_label("Chat cost")
    await expect(badge).to_have_text(badge_text(cost))
    await expect(badge).to_have_attribute(
        "title",
        f"Cost: {dollars}\n"
        + (
            f"Input {cost['input_tokens']}, output {cost['output_tokens']}, "
            "cache read 0, cache write 0\n"
            f"priced: {dollars}"
        ),
    )

    await page.get_by_label("Message", exact=True).fill("and again")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator("#messages .message.assistant")).to_have_count(2, timeout=20_000)
    await expect(page.get_by_label("Chat cost")).not_to_have_text(badge_text(cost))
    again = await chat_cost(ui, chat_id)
    assert again["cost_micros"] > cost["cost_micros"]
    await expect(badge).to_have_text(badge_text(again))

    await page.get_by_role("button", name="New chat").click()
    await expect(badge).to_be_hidden()


async def chat_cost(ui: Ui, chat_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=ui.live.url, headers={"Authorization": f"Bearer {ui.token}"}
    ) as client:
        body: dict[str, Any] = (await client.get(f"/api/chats/{chat_id}/cost")).json()
        return body


def usd(micros: int) -> str:
    return f"${micros / 1e6:.{6 if micros < 10_000 else 4}f}"


def badge_text(cost: dict[str, Any]) -> str:
    return (
        f"{usd(cost['cost_micros'])} · {cost['input_tokens']:,} in · "
        f"{cost['output_tokens']:,} out tokens"
    )
