"""A web search the provider ran, in the UI: its card and the sources as safe links."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import Ui

# Titles and the query come from the web: they must show as text, never as markup.
QUERY = '<img src=x onerror="window.pwned=1"> release'


async def test_a_provider_web_search_shows_its_sources_as_links(ui: Ui) -> None:
    await ui.live.store.create_model_config(
        "searcher", "scripted", "searcher", provider_tools=["web_search"]
    )
    async with ui.live.client(ui.token) as client:
        created = await client.post(
            "/api/chats",
            json={"message": QUERY, "model": "searcher", "tools": {"provider": ["web_search"]}},
        )
        assert created.status_code == 201, created.text
    page = ui.page
    await page.goto(f"{ui.base_url}/#/chat/{created.json()['id']}")

    card = page.locator("#messages details.tool-provider")
    await expect(card.locator(".tool-name")).to_have_text("web_search", timeout=20_000)
    await expect(card.locator(".tool-by")).to_have_text("run by the provider")
    await expect(card.locator(".tool-state")).to_have_text("done")
    links = page.get_by_label("Sources of web_search").get_by_role("link")
    await expect(links).to_have_text(
        [f"Results for {QUERY}", f"{QUERY} - Example wiki"], timeout=20_000
    )
    first = links.first
    await expect(first).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(first).to_have_attribute("target", "_blank")
    href = await first.get_attribute("href")
    assert href is not None and href.startswith("https://example.com/search?q=%3Cimg")
    await card.locator("summary").click()
    await expect(card.get_by_label("Input of web_search")).to_contain_text('"query": "<img src=x')
    assert await page.locator("#messages img").count() == 0
    assert await page.evaluate("window.pwned") is None


async def test_a_source_that_is_not_http_is_text_not_a_link(ui: Ui) -> None:
    kinds = await ui.page.evaluate(
        """async () => {
          const { toolCard } = await import("/ui/view.js");
          const node = toolCard({
            id: "ws1", name: "web_search", args: {}, result: null, providerExecuted: true,
            sources: [
              { url: "javascript:alert(1)", title: "bad" },
              { url: "https://example.com/a", title: "" },
            ],
          }, new Set());
          return [...node.querySelectorAll(".tool-sources li")].map((li) => {
            const a = li.querySelector("a");
            return a ? ["link", a.textContent, a.href] : ["text", li.textContent];
          });
        }"""
    )
    assert kinds == [
        ["text", "bad"],
        ["link", "https://example.com/a", "https://example.com/a"],
    ]


async def test_a_new_chat_turns_on_web_search_where_its_model_allows_it(ui: Ui) -> None:
    await ui.live.store.create_model_config(
        "searcher", "scripted", "searcher", provider_tools=["web_search"]
    )
    page = ui.page
    await page.reload()
    await expect(page.locator("#app")).to_be_visible()
    switch = page.get_by_label("Web search", exact=True)
    await expect(switch).to_be_hidden()  # the default model does not allow it
    picker = page.get_by_label("Model", exact=True)
    await picker.select_option(label="searcher (scripted:searcher)")
    await expect(switch).to_be_visible()
    await switch.check()
    await page.get_by_label("Message", exact=True).fill("chatd news")
    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_url("**/#/chat/*")
    links = page.get_by_label("Sources of web_search").get_by_role("link")
    await expect(links).to_have_count(2, timeout=20_000)
    await expect(switch).to_be_hidden()  # an open chat keeps the tools it was made with
    chat_id = page.url.rsplit("/", 1)[1]
    async with ui.live.client(ui.token) as client:
        chat = (await client.get(f"/api/chats/{chat_id}")).json()
    assert chat["tools"]["provider"] == ["web_search"]
