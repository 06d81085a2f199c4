"""The sign-in page names the deployment's own admin token file (CHATD_DATA_DIR)."""

from __future__ import annotations

import html
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect

from tests.web.conftest import running_replica


async def test_the_sign_in_page_names_the_data_dirs_admin_token(
    tmp_path: Path, browser: Browser
) -> None:
    data_dir = tmp_path / "<b>odd</b> & dir"  # markup in the path must come out as text
    token_file = str(data_dir / "admin.token")
    async with running_replica(data_dir) as live:
        async with httpx.AsyncClient(base_url=live.url) as client:
            page_html = (await client.get("/")).text
        assert f'<code id="admin-token-path">{html.escape(token_file)}</code>' in page_html
        assert ".chatd/admin.token" not in page_html
        assert "<b>odd</b>" not in page_html

        page = await browser.new_page()
        await page.goto(live.url)
        hint = page.locator("#token-hint")
        await expect(hint).to_contain_text(f"keeps it in {token_file};")
        await expect(hint.locator("b")).to_have_count(0)
        await page.close()
