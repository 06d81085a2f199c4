"""A request's log lines and HTTP metrics, over real HTTP on loopback.

Every request gets one access line and one count, a 500 and a request cut off
included, and every line logged while handling it ends with the request id the
client is given. The log is read as `chatd serve` prints it (`chatd.logs.log_handler`
on the root logger, and on uvicorn's, which does not propagate).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from chatd.api import AppState, create_app
from chatd.logs import log_handler
from chatd.store import Store
from chatd.stream import StreamHub
from tests.api.conftest import LiveServer
from tests.api.test_app_basics import assert_error_shape

TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Served:
    live: LiveServer
    log: io.StringIO
    entered: asyncio.Event

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log.getvalue().splitlines() if text in line]

    def requests_counted(self, route: str, status: int) -> float | None:
        registry: CollectorRegistry = self.live.state.registry
        labels = {"method": "GET", "route": route, "status": str(status)}
        return registry.get_sample_value("chatd_http_requests_total", labels)


def app_with_test_routes(state: AppState, entered: asyncio.Event) -> FastAPI:
    app = create_app(state)
    store_log = logging.getLogger("chatd.store")

    async def in_a_child_task() -> None:
        logging.getLogger("chatd.worker").warning("a task the request started")

    @app.get("/test/boom")
    async def boom() -> None:
        store_log.warning("the store before the failure")
        await asyncio.create_task(in_a_child_task())
        raise RuntimeError("the route broke")

    @app.get("/test/hang")
    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    return app


@contextmanager
def server_log() -> Iterator[io.StringIO]:
    # After uvicorn's Config is made: it resets the handlers of its own loggers.
    stream = io.StringIO()
    handler = log_handler("r1", stream)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield stream
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.fixture
async def served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Served]:
    caplog.set_level(logging.INFO)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/chatd.db", data_dir=tmp_path)
    state = AppState(store=store, hub=StreamHub())
    entered = asyncio.Event()
    # A request still running when the server stops is cancelled after this grace.
    live = LiveServer(state, app_with_test_routes(state, entered), timeout_graceful_shutdown=1)
    try:
        with server_log() as log:
            async with live:
                yield Served(live, log, entered)
    finally:
        await store.close()


async def test_a_500_has_its_access_line_metric_one_traceback_and_its_id_on_every_line(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=served.live.url) as client:
        response = await client.get("/test/boom")
        await client.get("/healthz")  # the 500's request has surely finished
    error = assert_error_shape(response, 500, "internal")
    request_id = response.headers["x-request-id"]
    assert response.headers.get_list("x-request-id") == [request_id]
    assert error["detail"] == f"request id {request_id}"
    tail = f" request_id={request_id}"

    access = served.lines("chatd.access GET /test/boom")
    assert len(access) == 1, served.log.getvalue()
    assert re.search(r" INFO chatd\.access GET /test/boom 500 [0-9.]+ms request_id=", access[0])
    assert access[0].endswith(tail)
    assert served.requests_counted("/test/boom", 500) == 1

    [internal] = served.lines("internal error")
    assert internal.endswith(tail) and " ERROR chatd.api " in internal
    assert served.log.getvalue().count(TRACEBACK) == 1
    assert "RuntimeError: the route broke" in served.log.getvalue()
    [store_line] = served.lines("the store before the failure")
    [child_line] = served.lines("a task the request started")
    assert store_line.endswith(tail) and child_line.endswith(tail)

    [healthz] = served.lines("chatd.access GET /healthz 200")
    assert request_id not in healthz
    logging.getLogger("chatd").warning("between requests")
    [between] = served.lines("between requests")
    assert "request_id=" not in between


async def test_a_request_cut_off_by_its_client_and_the_shutdown_still_gets_its_line(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=served.live.url) as client:
        request = asyncio.create_task(client.get("/test/hang"))
        await served.entered.wait()
        request.cancel()  # the client hangs up; the route runs on
        await asyncio.gather(request, return_exceptions=True)
    served.live.server.should_exit = True
    assert served.live.task is not None
    await served.live.task  # the shutdown's grace runs out and cancels the route

    [access] = served.lines("chatd.access GET /test/hang")
    assert re.search(r" GET /test/hang 0 [0-9.]+ms request_id=[0-9a-f]{16}$", access)
    assert served.requests_counted("/test/hang", 0) == 1
