"""Built-in tools in the UI: the tools picker of a new chat, the chat's tools badge, and
the server's refusal shown as an API error."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

from playwright.async_api import Browser, expect

from chatd.tools import BUILTIN_TOOL_NAMES, allowed_builtin_tools
from tests.service.conftest import LiveReplica
from tests.web.conftest import Ui, open_ui
from tests.web.test_actions import assert_every_control_labelled

# The refusal names a tool the user asked for and may not use: one of the file tools.
FILE_TOOL_NAME = re.compile("|".join(sorted(allowed_builtin_tools("files"))))
SANDBOXED_ECHO = '/call execute {"command": "echo sandboxed-$((6*7))"}'


async def set_policy(live: LiveReplica, username: str, policy: str) -> None:
    user = await live.store.get_user_by_name(username)
    await live.store.set_tool_policy(user.id, policy)


@contextlib.asynccontextmanager
async def ui_with_policy(
    live: LiveReplica, browser: Browser, username: str, policy: str
) -> AsyncIterator[Ui]:
    """A signed-in page for `username`, whom an admin gave tool policy `policy`."""
    ui = await open_ui(live, browser, username, live.url)
    try:
        await set_policy(live, username, policy)
        await ui.page.reload()  # signs in again with the saved token: the new policy
        await expect(ui.page.locator("#app")).to_be_visible()
        yield ui
    finally:
        await ui.page.context.close()
    assert ui.page_errors == [], "the page threw"


async def test_a_user_granted_all_tools_runs_a_command_in_the_sandbox(
    live: LiveReplica, browser: Browser
) -> None:
    async with ui_with_policy(live, browser, "grace", "all") as ui:
        page = ui.page
        picker = page.get_by_label("Tools", exact=True)
        await expect(picker).to_be_visible()
        await expect(picker.locator("option")).to_have_text(["off", "files", "all"])
        await expect(picker).to_have_value("off")  # nothing enabled until asked for
        await assert_every_control_labelled(page)
        await picker.select_option(label="all")

        chat_id = await ui.start_chat(SANDBOXED_ECHO)
        card = page.locator("#messages details.tool", has_text="execute")
        await expect(card.locator(".tool-state")).to_have_text("done", timeout=20_000)
        await card.locator("summary").click()
        await expect(card.get_by_label("Result of execute")).to_contain_text("sandboxed-42")
        await expect(page.locator("#messages .message.assistant").last).to_contain_text(
            "sandboxed-42"
        )
        badge = page.locator("#chat-builtin-tools")
        await expect(badge).to_have_text("tools: all")
        await expect(picker).to_be_hidden()  # an open chat keeps the tools it was made with
        async with live.client(ui.token) as client:
            chat = (await client.get(f"/api/chats/{chat_id}")).json()
        assert chat["tools"]["builtin"] == list(BUILTIN_TOOL_NAMES)

        # The level is the session's, not the chat's: the next new chat starts with it.
        await page.get_by_role("button", name="New chat").click()
        await expect(picker).to_have_value("all")
        await expect(badge).to_be_hidden()


async def test_the_ui_names_the_same_tools_as_the_server(ui: Ui) -> None:
    names = await ui.page.evaluate(
        """async () => {
          const tools = await import("/ui/tools.js");
          return {all: [...tools.BUILTIN_TOOLS], files: [...tools.FILE_TOOLS]};
        }"""
    )
    assert names["all"] == list(BUILTIN_TOOL_NAMES)
    assert set(names["files"]) == allowed_builtin_tools("files")


async def test_a_user_with_no_tools_gets_no_picker_and_a_refusal_reads_as_an_error(
    ui: Ui,
) -> None:
    page = ui.page
    picker = page.get_by_label("Tools", exact=True)
    # ada has the deployment's default policy: the file tools, not the process tools.
    await expect(picker.locator("option")).to_have_text(["off", "files"])
    await picker.select_option(label="files")
    await ui.start_chat("save a note")
    await expect(page.locator("#chat-builtin-tools")).to_have_text("tools: files")
    await expect(page.locator("#messages details.tool .tool-name")).to_have_text(["write_file"])

    # An admin takes the tools away while the page is open: the server refuses the chat.
    await set_policy(ui.live, "ada", "none")
    await page.get_by_role("button", name="New chat").click()
    await expect(picker).to_have_value("files")
    box = page.get_by_label("Message", exact=True)
    await box.fill("read my notes")
    await page.get_by_role("button", name="Send", exact=True).click()
    error = page.locator("#status-line .error-chip")
    await expect(error).to_be_visible()
    await expect(error.locator(".chip.kind")).to_have_text("tool_not_allowed")
    await expect(error.locator(".chip.http")).to_have_text("HTTP 422")
    await expect(error.locator(".status-message")).to_contain_text(FILE_TOOL_NAME)
    assert "Traceback" not in await error.inner_text()
    await expect(box).to_have_value("read my notes")  # the text is kept for another try
    assert "#/chat/" not in page.url

    await page.reload()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#tools-picker")).to_be_hidden()
    async with ui.live.client(ui.token) as client:
        chat = (await client.post("/api/chats", json={"message": "no tools here"})).json()
    await page.goto(f"{ui.base_url}/#/chat/{chat['id']}")
    await expect(page.locator("#chat-status")).to_be_visible()
    await expect(page.locator("#chat-builtin-tools")).to_be_hidden()


async def test_a_server_without_users_me_still_signs_in_with_no_tools(ui: Ui) -> None:
    page = ui.page
    await page.route("**/api/users/me", lambda route: route.fulfill(status=404, body=""))
    await page.reload()
    await expect(page.locator("#whoami")).to_have_text("Signed in")
    await expect(page.locator("#tools-picker")).to_be_hidden()
    await ui.start_chat("hello without tools")
    await expect(page.locator("#messages .message.assistant")).to_have_count(1)
    await expect(page.locator("#chat-builtin-tools")).to_be_hidden()
