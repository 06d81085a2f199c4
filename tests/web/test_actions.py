"""Client tools, the queue, editing, the chat list, and accessibility basics."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.web.conftest import Ui

# Every visible control must have an accessible name: aria-label, aria-labelledby, a
# <label>, or (buttons, summaries, links) its text.
UNLABELLED_CONTROLS = """() => {
  const controls = document.querySelectorAll(
    'button, input, select, textarea, summary, a[href], [tabindex]:not([tabindex="-1"])');
  const nameOf = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(' ').map((id) => document.getElementById(id)?.textContent).join(' ');
    if (el.labels && el.labels.length) return [...el.labels].map((l) => l.textContent).join(' ');
    if (['BUTTON', 'SUMMARY', 'A'].includes(el.tagName)) return el.textContent;
    return '';
  };
  return [...controls]
    .filter((el) => el.getClientRects().length > 0)
    .filter((el) => !nameOf(el).trim())
    .map((el) => el.outerHTML.slice(0, 120));
}"""


async def assert_every_control_labelled(page: Page) -> None:
    unlabelled = await page.evaluate(UNLABELLED_CONTROLS)
    assert unlabelled == [], f"controls without an accessible name: {unlabelled}"


async def test_requires_action_form_round_trip(ui: Ui) -> None:
    tools = {
        "dynamic": [
            {
                "name": "ask_browser",
                "description": "runs in the client",
                "input_schema": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}},
                    "required": ["url"],
                },
            }
        ]
    }
    async with ui.live.client(ui.token) as client:
        chat = (
            await client.post("/api/chats", json={"message": "use the browser", "tools": tools})
        ).json()
    await ui.page.goto(f"{ui.base_url}/#/chat/{chat['id']}")
    form = ui.page.locator("#action-required")
    await expect(form).to_be_visible()
    await expect(form.locator("legend")).to_have_text("Tool ask_browser")
    await expect(form.locator(".tool-input")).to_contain_text('"url": "example"')
    await expect(ui.page.locator("#status-line")).to_contain_text("client tool results")
    await assert_every_control_labelled(ui.page)
    await ui.page.get_by_label("Result for ask_browser").fill("page title: Example")
    await ui.page.get_by_role("button", name="Send tool results").click()
    await expect(form).to_be_hidden()
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer).to_contain_text("The tool answered: page title: Example")
    await expect(ui.page.locator("#chat-status")).to_have_text("waiting")


async def test_queue_while_busy_then_delete_and_edit_a_past_message(ui: Ui) -> None:
    model = await ui.live.scripted_model(
        "steady", delta_delay=0.03, script=[{"text": " ".join(["step"] * 250)}]
    )
    await ui.start_chat("first question", model)
    await expect(ui.page.locator("#chat-status")).to_have_text("running")
    box = ui.page.get_by_label("Message", exact=True)
    await box.fill("queued one")
    await ui.page.get_by_role("button", name="Queue after the current turn").click()
    await box.fill("queued two")
    await box.press("Enter")  # Enter queues while busy; it never interrupts
    queue = ui.page.locator("#queue-list li")
    await expect(queue).to_have_count(2)
    await expect(queue.first).to_contain_text("queued one")
    await assert_every_control_labelled(ui.page)
    await ui.page.get_by_role("button", name="Delete queued message: queued one").click()
    await expect(queue).to_have_count(1)
    user = ui.page.locator("#messages .message.user .message-text")
    await expect(user).to_have_text(["first question", "queued two"], timeout=20_000)
    await expect(ui.page.locator("#chat-status")).to_have_text("waiting", timeout=20_000)

    await ui.page.get_by_role("button", name="Edit message: first question").click()
    await ui.page.get_by_label("Edit message", exact=True).fill("a better question")
    await ui.page.get_by_role("button", name="Save and rerun").click()
    await expect(user).to_have_text(["a better question"])
    await expect(ui.page.locator("#chat-status")).to_have_text("waiting", timeout=20_000)
    await expect(ui.page.locator("#messages .message.assistant")).to_have_count(1)


async def test_chat_list_search_and_archive(ui: Ui) -> None:
    async with ui.live.client(ui.token) as client:
        for title in ("Groceries", "Tax return"):
            await client.post("/api/chats", json={"message": "hi", "title": title})
    await ui.page.reload()
    items = ui.page.locator("#chat-list .chat-item")
    await expect(items).to_have_count(2)
    await expect(items.first.locator(".badge")).to_have_text("waiting", timeout=20_000)
    await ui.page.get_by_label("Search chats by title").fill("tax")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Tax return")
    await items.first.click()
    await expect(ui.page.locator("#chat-title")).to_have_text("Tax return")
    await ui.page.get_by_role("button", name="Archive").click()
    await expect(items).to_have_count(0)
    await ui.page.get_by_label("Show archived").check()
    await expect(items).to_have_count(1)
    await expect(ui.page.get_by_role("button", name="Unarchive")).to_be_visible()


async def test_the_page_works_by_keyboard_alone(ui: Ui) -> None:
    page = ui.page
    model = await ui.live.scripted_model(
        "kb", delta_delay=0.05, script=[{"text": " ".join(["key"] * 200)}]
    )
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API token")).to_be_focused()
    await assert_every_control_labelled(page)
    await page.keyboard.type(ui.token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#app")).to_be_visible()
    await assert_every_control_labelled(page)

    # Tab to the model picker, choose by typing, then on to the message box.
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "model-select":
            break
    await expect(page.get_by_label("Model", exact=True)).to_be_focused()
    kb = await page.locator("#model-select option", has_text=model).get_attribute("value")
    await page.keyboard.type("kb")  # type-ahead picks the option
    await expect(page.get_by_label("Model", exact=True)).to_have_value(kb or "")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "composer-input":
            break
    await expect(page.get_by_label("Message", exact=True)).to_be_focused()
    await page.keyboard.type("typed, never clicked")
    await page.keyboard.press("Enter")
    await expect(page.locator("#preview")).to_contain_text("key")
    await page.keyboard.press("Escape")  # interrupts the running turn
    await expect(page.locator("#status-line")).to_contain_text("Chat interrupted")
    await assert_every_control_labelled(page)

    # Back to the chat list and into the chat again, by keyboard.
    await page.keyboard.press("Shift+Tab")
    for _ in range(20):
        if await page.evaluate("document.activeElement.classList.contains('chat-item')"):
            break
        await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#messages .message.user")).to_contain_text("typed, never clicked")
