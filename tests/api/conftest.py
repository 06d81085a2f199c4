"""A real uvicorn server on a free loopback port, and an HTTP client for it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chatd.api import AppState, create_app
from chatd.store import Store
from chatd.stream import StreamHub


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """`create_app(state)` (or the given app) on uvicorn; `options` go to uvicorn's Config."""

    def __init__(self, state: AppState, app: FastAPI | None = None, **options: Any) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or create_app(state),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            **options,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/chatd.db", data_dir=tmp_path)
    try:
        async with LiveServer(AppState(store=store, hub=StreamHub())) as live:
            yield live
    finally:
        await store.close()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http
