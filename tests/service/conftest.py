"""A whole replica (store on SQLite, worker, hub, HTTP) on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from chatd.config import load_settings
from chatd.server import Replica, build
from tests.api.conftest import free_port

# The store's engine fixtures: service tests run on both engines with them too.
from tests.store.conftest import Backend, backend, postgres, sqlite_template  # noqa: F401


class LiveReplica:
    def __init__(self, replica: Replica, port: int, http: str = "auto") -> None:
        self.replica = replica
        self.store = replica.store
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                replica.app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="off",
                http=http,
            )
        )
        self.task: asyncio.Task[None] | None = None

    async def token(self, username: str, *, admin: bool = False) -> str:
        user = await self.store.create_user(username, is_admin=admin)
        token, _ = await self.store.create_api_token(user.id)
        return token

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=20
        )

    async def scripted_model(self, name: str, **options: Any) -> str:
        config = await self.store.create_model_config(name, "scripted", name, options=options)
        return config.name


@contextlib.asynccontextmanager
async def running_replica(
    data_dir: Path, *, http: str = "auto", **overrides: Any
) -> AsyncIterator[LiveReplica]:
    """A replica with test timings (spec §0.1) on a free port; `overrides` are Settings.

    `http` is uvicorn's protocol ("auto" is httptools, as `chatd serve` runs).
    """
    settings = load_settings(
        {"CHATD_DATA_DIR": str(data_dir)},
        **{
            "lease_ttl": 3.0,
            "heartbeat_interval": 0.5,
            "acquire_interval": 0.2,
            "sync_interval": 0.5,
            "shutdown_grace": 1.0,
            # The test client shares this event loop: its work must not count as the
            # replica's load (tests/service/test_admission.py turns it on).
            "acquire_max_busy": 0.0,
            **overrides,
        },
    )
    replica = await build(settings)
    live = LiveReplica(replica, free_port(), http)
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


@pytest.fixture
async def live_on_both(backend: Backend, tmp_path: Path) -> AsyncIterator[LiveReplica]:  # noqa: F811
    """A replica on SQLite, then on PostgreSQL (the store tests' throwaway cluster)."""
    async with running_replica(tmp_path, database_url=await backend.new_url()) as replica:
        yield replica


class SSE:
    """A real SSE client over httpx: events as (id or None, event, data dict)."""

    def __init__(self, client: httpx.AsyncClient, path: str, last_event_id: int | None = None):
        self.client = client
        self.path = path
        self.headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self.events: list[tuple[int | None, str, dict[str, Any]]] = []

    async def read_until(
        self, stop: Any, within: float = 20.0
    ) -> list[tuple[int | None, str, dict[str, Any]]]:
        async with asyncio.timeout(within):
            async with self.client.stream("GET", self.path, headers=self.headers) as response:
                assert response.status_code == 200, await response.aread()
                assert response.headers["content-type"].startswith("text/event-stream")
                event_id: int | None = None
                name = ""
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        self.events.append((event_id, name, data))
                        if stop(event_id, name, data):
                            return self.events
                        event_id, name = None, ""
        return self.events


def turn_done(_id: int | None, name: str, data: dict[str, Any]) -> bool:
    """The turn ended: idle, failed, or waiting for client tools (the event after status)."""
    return name == "action_required" or (
        name == "status" and data["status"] in ("waiting", "error")
    )
