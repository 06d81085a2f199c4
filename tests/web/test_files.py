"""Files in the browser: drop, paste or pick them, see their chips, send, see them in history."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from typing import Any

from playwright.async_api import JSHandle, Page, expect

from tests.web.conftest import Ui
from tests.web.test_actions import assert_every_control_labelled


def png(width: int = 2, height: int = 2) -> bytes:
    """A real, decodable PNG (the thumbnail must render, not just exist)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def data_transfer(page: Page, *files: tuple[str, str, bytes]) -> JSHandle:
    """A DataTransfer carrying `files` (name, type, bytes), as a drop or paste has."""
    payload: list[dict[str, Any]] = [
        {"name": n, "type": t, "b64": base64.b64encode(d).decode()} for n, t, d in files
    ]
    return await page.evaluate_handle(
        """(files) => {
          const transfer = new DataTransfer();
          for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, { type: f.type }));
          }
          return transfer;
        }""",
        payload,
    )


async def test_dropped_files_show_as_chips_are_sent_and_stay_in_history(ui: Ui) -> None:
    page = ui.page
    await page.get_by_role("button", name="New chat").click()
    composer = page.locator("#composer")
    dropped = await data_transfer(
        page,
        ("shot.png", "image/png", png()),
        ("notes.txt", "text/plain", b"buy milk\n"),
        ("tool.exe", "application/octet-stream", b"MZ\x90\x00\x03\x00"),
    )
    await composer.dispatch_event("dragover", {"dataTransfer": dropped})
    await composer.dispatch_event("drop", {"dataTransfer": dropped})

    chips = page.locator("#attachments .file-chip")
    await expect(chips).to_have_count(3)
    await expect(page.locator("#attachments .attachment-ready")).to_have_count(2)
    refused = page.locator("#attachments .attachment-error")
    await expect(refused).to_contain_text("tool.exe")
    await expect(refused).to_contain_text("Upload a PNG, JPEG, GIF or WebP image")
    await assert_every_control_labelled(page)
    await refused.get_by_role("button", name="Remove tool.exe").click()
    await expect(chips).to_have_count(2)

    await page.get_by_label("Message", exact=True).fill("what are these?")
    await page.get_by_role("button", name="Send", exact=True).click()
    await page.wait_for_url("**/#/chat/*")
    await expect(page.locator("#attachments")).to_be_hidden()

    sent = page.locator(".message.user").first
    await expect(sent.locator(".file-chip")).to_have_count(2)
    await expect(sent.locator(".file-name")).to_have_text(["shot.png", "notes.txt"])
    await expect(sent.locator(".message-text")).to_have_text("what are these?")
    await expect(page.locator(".message.assistant").last).to_contain_text(
        "attached shot.png (image/png"
    )
    await assert_thumbnail_renders(page)

    # History, read again from the server, still has them; the thumbnail comes back
    # through the token-authenticated file route.
    await page.reload()
    await expect(page.locator(".message.user .file-name")).to_have_text(["shot.png", "notes.txt"])
    await assert_thumbnail_renders(page)


async def assert_thumbnail_renders(page: Page) -> None:
    thumb = page.locator(".message.user img.thumb")
    await expect(thumb).to_have_attribute("src", re.compile(r"^blob:"))
    await page.wait_for_function(
        "() => document.querySelector('.message.user img.thumb').naturalWidth === 2"
    )


async def test_pasted_and_picked_files_go_with_the_next_message(ui: Ui) -> None:
    page = ui.page
    await ui.start_chat("hello")
    await expect(page.locator(".message.assistant")).to_have_count(1)
    box = page.get_by_label("Message", exact=True)
    pasted = await data_transfer(page, ("image.png", "image/png", png()))
    await box.evaluate(
        """(box, transfer) => box.dispatchEvent(new ClipboardEvent("paste", {
          clipboardData: transfer, bubbles: true, cancelable: true,
        }))""",
        pasted,
    )
    await page.locator("#file-input").set_input_files(
        files=[{"name": "paper.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}]
    )
    await expect(page.locator("#attachments .attachment-ready")).to_have_count(2)
    # Files alone make a message.
    await page.get_by_role("button", name="Send", exact=True).click()
    last_user = page.locator(".message.user").last
    await expect(last_user.locator(".file-name")).to_have_text(["image.png", "paper.pdf"])
    await expect(page.locator(".message.assistant").last).to_contain_text(
        "paper.pdf (application/pdf"
    )
