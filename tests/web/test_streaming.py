"""The chat view streams a turn, renders tools, retries, interrupts and resumes."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from chatd.loop import Tool, ToolCall, ToolResponse
from tests.web.conftest import CuttableProxy, Ui, open_ui


async def test_a_message_streams_into_the_chat(ui: Ui) -> None:
    words = " ".join(f"word{i}" for i in range(60))
    model = await ui.live.scripted_model("slow", delta_delay=0.05, script=[{"text": words}])
    await ui.start_chat("hello from the browser", model)
    preview = ui.page.locator("#preview")
    await expect(preview).to_contain_text("word1")
    assert "word59" not in await preview.inner_text(), "the answer arrives word by word"
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer).to_have_text(words)
    await expect(preview).to_be_hidden()
    await expect(ui.page.locator("#messages .message.user .message-text")).to_have_text(
        "hello from the browser"
    )
    await expect(ui.page.locator("#chat-status")).to_have_text("waiting")


async def test_reasoning_streams_as_thinking_then_folds_away(ui: Ui) -> None:
    model = await ui.live.scripted_model(
        "thinker",
        delta_delay=0.05,
        script=[{"reasoning": " ".join(["hmm"] * 30), "text": "Decided."}],
    )
    await ui.start_chat("think first", model)
    await expect(ui.page.locator("#status-line")).to_contain_text("Thinking…")
    await expect(ui.page.locator("#preview .reasoning summary")).to_have_text("Thinking…")
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer).to_contain_text("Decided.")
    reasoning = answer.locator(".reasoning")
    await expect(reasoning.locator("summary")).to_have_text("Reasoning")
    assert await reasoning.get_attribute("open") is None, "committed reasoning is collapsed"


async def test_markdown_and_code_render_and_html_stays_text(ui: Ui) -> None:
    text = (
        "# Plan\n\nRun **this** with `python`:\n\n```python\nprint('<b>hi</b>')\n```\n\n"
        "- one\n- two\n\n<img src=x onerror=alert(1)> [bad](javascript:alert(1)) "
        "[docs](https://example.com/docs)"
    )
    model = await ui.live.scripted_model("md", script=[{"text": text}])
    await ui.start_chat("markdown please", model)
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer.locator("h3")).to_have_text("Plan")
    await expect(answer.locator("pre code.language-python")).to_have_text("print('<b>hi</b>')")
    await expect(answer.locator("strong")).to_have_text("this")
    await expect(answer.locator("li")).to_have_text(["one", "two"])
    await expect(answer.locator("a")).to_have_count(1)
    await expect(answer.locator("a")).to_have_attribute("href", "https://example.com/docs")
    await expect(answer).to_contain_text("<img src=x onerror=alert(1)>")
    await expect(answer).to_contain_text("[bad](javascript:alert(1))")
    assert await ui.page.locator("#conversation img, #conversation b").count() == 0


async def test_a_tool_call_renders_with_input_and_result(ui: Ui) -> None:
    async def weather(call: ToolCall) -> ToolResponse:
        return ToolResponse.text("sunny, 21 °C")

    tool = Tool(
        "lookup_weather",
        "The weather in a city.",
        weather,
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    ui.live.replica.worker.server_tools = lambda chat: [tool]
    await ui.start_chat("weather?")
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer).to_contain_text("The tool answered: sunny, 21 °C")
    card = ui.page.locator("#messages details.tool").first
    await expect(card.locator(".tool-name")).to_have_text("lookup_weather")
    await expect(card.locator(".tool-state")).to_have_text("done")
    await expect(card.locator(".tool-input")).to_be_hidden()
    await card.locator("summary").click()
    await expect(card.locator(".tool-input")).to_contain_text('"city": "example"')
    await expect(card.locator(".tool-result")).to_have_text("sunny, 21 °C")


async def test_a_429_shows_the_countdown_then_the_answer(ui: Ui) -> None:
    model = await ui.live.scripted_model(
        "flaky",
        script=[
            {"error": {"status_code": 429, "message": "slow down", "retry_after": 2}},
            {"text": "made it"},
        ],
    )
    await ui.start_chat("hi", model)
    status = ui.page.locator("#status-line")
    await expect(status).to_contain_text(re.compile(r"Retrying in 2 s"))
    await expect(status.locator(".chip.kind")).to_have_text("rate_limit")
    await expect(status.locator(".chip.http")).to_have_text("HTTP 429")
    await expect(status).to_contain_text("Retrying in 1 s")
    await expect(ui.page.locator("#messages .message.assistant").last).to_have_text("made it")
    await expect(status).not_to_contain_text("Retrying")


async def test_an_error_shows_a_chip_with_the_http_status(ui: Ui) -> None:
    model = await ui.live.scripted_model(
        "broken", script=[{"error": {"status_code": 401, "message": "invalid api key"}}]
    )
    await ui.start_chat("hi", model)
    status = ui.page.locator("#status-line")
    await expect(ui.page.locator("#chat-status")).to_have_text("error")
    await expect(status.locator(".error-chip .chip.http")).to_have_text("HTTP 401")
    await expect(status.locator(".error-chip .chip.kind")).to_have_text("auth")


async def test_interrupt_shows_chat_interrupted_and_keeps_the_partial_answer(ui: Ui) -> None:
    model = await ui.live.scripted_model(
        "long", delta_delay=0.05, script=[{"text": " ".join(f"w{i}" for i in range(200))}]
    )
    await ui.start_chat("talk for a while", model)
    await expect(ui.page.locator("#preview")).to_contain_text("w5")
    await ui.page.get_by_role("button", name="Interrupt", exact=True).click()
    await expect(ui.page.locator("#status-line")).to_contain_text("Chat interrupted")
    await expect(ui.page.locator("#chat-status")).to_have_text("waiting")
    partial = ui.page.locator("#messages .message.assistant").last
    await expect(partial).to_contain_text("w5")
    assert "w199" not in await partial.inner_text()
    await expect(ui.page.get_by_role("button", name="Interrupt", exact=True)).to_be_hidden()


async def test_a_dropped_stream_reconnects_without_duplicating_text(
    live: Any, browser: Any, proxy: CuttableProxy
) -> None:
    words = [f"w{i:02d}" for i in range(80)]
    expected = " ".join(words)
    model = await live.scripted_model("numbered", delta_delay=0.05, script=[{"text": expected}])
    ui = await open_ui(live, browser, "rae", proxy.url)
    await ui.page.get_by_role("button", name="New chat").click()
    await ui.page.evaluate(
        """() => {
          window.previewSamples = [];
          const preview = document.getElementById('preview');
          new MutationObserver(() => window.previewSamples.push(preview.textContent))
            .observe(preview, {childList: true, subtree: true, characterData: true});
        }"""
    )
    await ui.start_chat("count for me", model)
    await expect(ui.page.locator("#preview")).to_contain_text("w10")
    assert proxy.cut_streams() >= 1
    await expect(ui.page.locator("#status-line")).to_contain_text("Reconnecting…")
    answer = ui.page.locator("#messages .message.assistant").last
    await expect(answer).to_have_text(expected, timeout=15_000)
    await expect(ui.page.locator("#status-line")).not_to_contain_text("Reconnecting")
    samples: list[str] = await ui.page.evaluate("window.previewSamples")
    streamed = [s for s in samples if s]
    assert streamed, "the preview streamed"
    for sample in streamed:
        assert expected.startswith(sample), f"preview diverged: {sample!r}"
    resumed = proxy.stream_requests[1:]
    assert resumed, "the browser opened the stream again"
    assert b"last-event-id:" in resumed[0].lower(), "it resumed from its last event id"
    assert ui.page_errors == []
    await ui.page.context.close()
