"""The web UI and /docs work in Chromium under their Content-Security-Policy headers,
loading nothing from another origin (the test machine has no internet either)."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from tests.service.conftest import LiveReplica
from tests.web.conftest import TIMEOUT_MS, Ui


def watch(page: Page, origin: str) -> tuple[list[str], list[str]]:
    """Console errors (a CSP violation is one) and requests to any other origin."""
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "request",
        lambda r: None if r.url.startswith((origin, "data:")) else elsewhere.append(r.url),
    )
    return errors, elsewhere


async def test_docs_render_swagger_ui_from_this_origin(live: LiveReplica, browser: Browser) -> None:
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors, elsewhere = watch(page, live.url)
    await page.goto(f"{live.url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("chatd")
    # The operations come from /openapi.json, and "Execute" calls the API, both allowed.
    healthz = page.locator(
        ".opblock", has=page.locator(".opblock-summary-path", has_text="/healthz")
    )
    await healthz.locator(".opblock-summary").click()
    await healthz.get_by_role("button", name="Try it out").click()
    await healthz.get_by_role("button", name="Execute").click()
    await expect(
        healthz.locator(".live-responses-table .response-col_status:not(.col_header)")
    ).to_contain_text("200")
    await context.close()
    assert errors == [] and elsewhere == []


async def test_the_web_ui_signs_in_and_sends_under_its_policy(ui: Ui) -> None:
    errors, elsewhere = watch(ui.page, ui.base_url)
    await ui.page.reload()
    await expect(ui.page.locator("#app")).to_be_visible()
    await ui.start_chat("hello")
    await expect(ui.page.locator(".message").last).to_be_visible()
    assert errors == [] and elsewhere == []
