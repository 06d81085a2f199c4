"""The browser UI against a live replica: Playwright driving Debian's headless chromium.

Never a browser Playwright downloads: `/usr/bin/chromium` (installed by `make test`);
without it these tests fail, they do not skip. Every page is served by a real replica
(`tests.service.conftest.live`) with scripted models, optionally through `CuttableProxy`,
a loopback TCP proxy that can drop the SSE connections as a network failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from chatd.config import load_settings
from chatd.server import build
from tests.api.conftest import free_port
from tests.service.conftest import LiveReplica

__all__ = ["CHROMIUM", "CuttableProxy", "Ui", "running_replica"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Playwright's defaults (30 s for actions, 5 s for assertions) are too long for a hung UI
# and too short for a loaded CI machine; everything here is local.
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)


@contextlib.asynccontextmanager
async def running_replica(data_dir: Path) -> AsyncIterator[LiveReplica]:
    """A replica serving on a free loopback port (as `tests.service.conftest.live`)."""
    settings = load_settings(
        {"CHATD_DATA_DIR": str(data_dir)},
        lease_ttl=3.0,
        heartbeat_interval=0.5,
        acquire_interval=0.2,
        sync_interval=0.5,
        shutdown_grace=1.0,
    )
    replica = await build(settings)
    live = LiveReplica(replica, free_port())
    replica.start()
    live.task = asyncio.create_task(live.server.serve())
    while not live.server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    try:
        yield live
    finally:
        replica.begin_shutdown()
        live.server.should_exit = True
        await live.task
        await replica.stop()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveReplica]:
    async with running_replica(tmp_path) as replica:
        yield replica


class CuttableProxy:
    """A loopback TCP proxy in front of the replica; `cut_streams()` drops every open
    SSE connection mid-flight (both directions, no goodbye), as a flaky network does."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stream_requests: list[bytes] = []
        self._streams: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut_streams(self) -> int:
        """Abort every SSE connection (both sides); returns how many sockets were cut."""
        cut = list(self._streams)
        for writer in cut:
            writer.transport.abort()
        self._streams.clear()
        return len(cut)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ends = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            ends.append(up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, ends, inbound=True),
                self._pump(up_reader, writer, ends, inbound=False),
            )
        except OSError:
            return  # the upstream refused or a side closed: drop the connection
        finally:
            for end in ends:
                end.transport.abort()
                self._streams.discard(end)
            self._tasks.discard(task)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        ends: list[asyncio.StreamWriter],
        *,
        inbound: bool,
    ) -> None:
        try:
            while chunk := await src.read(65536):
                if inbound and b"/stream?" in chunk.split(b"\r\n", 1)[0]:
                    # EventSource sends one request per connection: watch both ends.
                    self.stream_requests.append(chunk)
                    self._streams.update(ends)
                dst.write(chunk)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            return  # one side closed: close both
        finally:
            for end in ends:
                end.transport.abort()


@dataclass
class Ui:
    """A signed-in page on a live replica."""

    live: LiveReplica
    page: Page
    token: str
    base_url: str
    page_errors: list[str] = field(default_factory=list)

    async def sign_in(self) -> None:
        await self.page.goto(self.base_url)
        await self.page.get_by_label("API token").fill(self.token)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.locator("#app")).to_be_visible()

    async def start_chat(self, text: str, model: str | None = None) -> str:
        """Send the first message of a new chat; returns the chat id."""
        await self.page.get_by_role("button", name="New chat").click()
        if model is not None:
            picker = self.page.get_by_label("Model", exact=True)
            [value] = await picker.select_option(label=f"{model} (scripted:{model})")
            await expect(picker).to_have_value(value)
        await self.page.get_by_label("Message", exact=True).fill(text)
        await self.page.get_by_role("button", name="Send", exact=True).click()
        await self.page.wait_for_url("**/#/chat/*")
        return self.page.url.rsplit("/", 1)[1]


def _require_chromium() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the UI tests drive Debian's chromium "
            "(`make test` installs it; or `sudo apt-get install chromium`)",
            pytrace=False,
        )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_ui(live: LiveReplica, browser: Browser, username: str, base_url: str) -> Ui:
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    ui = Ui(live, page, await live.token(username), base_url)
    # Uncaught exceptions in the page fail the test (checked at teardown).
    page.on("pageerror", lambda exc: ui.page_errors.append(str(exc)))
    await ui.sign_in()
    return ui


@pytest.fixture
async def ui(live: LiveReplica, browser: Browser) -> AsyncIterator[Ui]:
    ui = await open_ui(live, browser, "ada", live.url)
    yield ui
    await ui.page.context.close()
    assert ui.page_errors == [], "the page threw"


@pytest.fixture
async def proxy(live: LiveReplica) -> AsyncIterator[CuttableProxy]:
    upstream = int(live.url.rsplit(":", 1)[1])
    proxy = CuttableProxy(upstream)
    await proxy.start()
    yield proxy
    await proxy.stop()
