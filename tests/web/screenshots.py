"""Screenshots of the UI's main states for the README: `make screenshots`.

Runs a replica with scripted models on a loopback port, drives Debian's chromium
through the states, and writes PNGs to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from chatd.loop import Tool, ToolCall, ToolResponse
from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Ui, running_replica

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

ANSWER = (
    "Here is the plan:\n\n1. Read the **config**\n2. Start the server\n\n"
    "```sh\nmake run\n```\n\nThen open `http://127.0.0.1:8080`."
)


async def weather(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text("sunny, 21 °C")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data_dir:
        async with running_replica(Path(data_dir)) as live, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            context = await browser.new_context(viewport={"width": 1200, "height": 760})
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            ui = Ui(live, page, await live.token("ada"), live.url)
            md = await live.scripted_model(
                "planner",
                delta_delay=0.02,
                script=[{"reasoning": "Short and concrete.", "text": ANSWER}],
            )
            await page.goto(live.url)
            await page.screenshot(path=OUT / "sign-in.png")
            await ui.sign_in()

            tool = Tool(
                "lookup_weather",
                "The weather in a city.",
                weather,
                {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            )
            live.replica.worker.server_tools = lambda chat: [tool]
            await ui.start_chat("What's the weather, and how do I run chatd?")
            await expect(page.locator("#messages .message.assistant").last).to_contain_text(
                "The tool answered"
            )
            live.replica.worker.server_tools = None
            await page.locator("#messages details.tool summary").first.click()
            await page.get_by_label("Model", exact=True).select_option(
                label=f"{md} (scripted:{md})"
            )
            await page.get_by_label("Message", exact=True).fill("And the steps?")
            await page.get_by_role("button", name="Send", exact=True).click()
            await expect(page.locator("#messages .message.assistant").last).to_contain_text(
                "Then open"
            )
            await page.screenshot(path=OUT / "chat.png")

            slow = await live.scripted_model(
                "slow", delta_delay=0.05, script=[{"text": " ".join(["streaming"] * 300)}]
            )
            await ui.start_chat("Tell me a long story", slow)
            await expect(page.locator("#preview")).to_contain_text("streaming streaming")
            box = page.get_by_label("Message", exact=True)
            await box.fill("Then summarise it")
            await box.press("Enter")
            await expect(page.locator("#queue-list li")).to_have_count(1)
            await page.screenshot(path=OUT / "streaming-queue.png")
            await page.get_by_role(
                "button", name="Delete queued message: Then summarise it"
            ).click()
            await page.get_by_role("button", name="Interrupt", exact=True).click()
            await expect(page.locator("#status-line")).to_contain_text("Chat interrupted")

            flaky = await live.scripted_model(
                "flaky",
                script=[
                    {
                        "error": {
                            "status_code": 429,
                            "message": "rate limit exceeded",
                            "retry_after": 5,
                        }
                    },
                    {"text": "made it"},
                ],
            )
            await ui.start_chat("hello?", flaky)
            await expect(page.locator("#status-line")).to_contain_text("Retrying in")
            await page.screenshot(path=OUT / "retry.png")
            await expect(page.locator("#messages .message.assistant").last).to_have_text("made it")

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
            async with live.client(ui.token) as client:
                chat = (
                    await client.post(
                        "/api/chats", json={"message": "use the browser", "tools": tools}
                    )
                ).json()
            await page.goto(f"{live.url}/#/chat/{chat['id']}")
            await expect(page.locator("#action-required")).to_be_visible()
            await page.get_by_label("Result for ask_browser").fill("page title: Example Domain")
            await page.screenshot(path=OUT / "client-tools.png")
            await browser.close()
    print(f"screenshots written to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
