"""A throwaway PostgreSQL and three `chatd serve` processes, and a watcher that
follows one chat's stream from replica to replica (reconnecting with Last-Event-ID
whenever the replica it is connected to dies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatd.localcluster import LocalCluster

# A reply of ~100 words at 20 ms a word: a turn streams for about two seconds.
SLOW = {"delta_delay": 0.02}

Event = tuple[int | None, str, dict[str, Any]]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", replicas=3)
    try:
        await cluster.start()
        await cluster.scripted_model("slow", **SLOW)
        yield cluster
    finally:
        await cluster.stop()


def words(marker: str, count: int = 80) -> str:
    """A user message the scripted model echoes back, starting with a unique marker."""
    return " ".join([marker, *(f"w{i}" for i in range(count))])


class Follower:
    """One chat's SSE stream, followed across replicas.

    Records every event with the time it arrived. When the connection drops (the
    replica died) it reconnects to the next live replica with `Last-Event-ID`.
    """

    def __init__(self, cluster: LocalCluster, token: str, chat_id: str, first: str) -> None:
        self.cluster = cluster
        self.token = token
        self.chat_id = chat_id
        self.replica = first
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self.connections: list[str] = []
        self.last_seq = 0

    def _next_replica(self) -> str:
        names = self.cluster.names
        start = names.index(self.replica)
        for step in range(1, len(names) + 1):
            name = names[(start + step) % len(names)]
            if self.cluster.replicas[name].alive:
                return name
        return self.replica

    async def follow(self, stop: Callable[[Event], bool], within: float) -> list[Event]:
        async with asyncio.timeout(within):
            while True:
                if await self._connection(stop):
                    return self.events
                self.replica = self._next_replica()
                await asyncio.sleep(0.05)

    async def _connection(self, stop: Callable[[Event], bool]) -> bool:
        """One connection; True when `stop` matched, False when it dropped."""
        url = f"{self.cluster.url(self.replica)}/api/chats/{self.chat_id}/stream"
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_seq:
            headers["Last-Event-ID"] = str(self.last_seq)
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    return False  # draining or not ready: try the next replica
                self.connections.append(self.replica)
                seq: int | None = None
                name = ""
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        seq = int(line[4:])
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        event = (seq, name, json.loads(line[6:]))
                        self.events.append(event)
                        self.arrived.append(time.monotonic())
                        if seq is not None:
                            self.last_seq = seq
                        if stop(event):
                            return True
                        seq, name = None, ""
        except httpx.TransportError:
            return False  # the replica went away: the caller reconnects elsewhere
        return False

    def seqs(self) -> list[int]:
        return [seq for seq, _, _ in self.events if seq is not None]


def turn_done(event: Event) -> bool:
    _, name, data = event
    return name == "status" and data["status"] in ("waiting", "error")


async def wait_for(check: Callable[[], Any], within: float, every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; that value."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if value:
                return value
            await asyncio.sleep(every)


def owner_of(cluster: LocalCluster, marker: str, after: float = 0.0) -> str | None:
    """The replica whose scripted model most recently started a call for `marker`."""
    owner = None
    for call in cluster.calls():
        first_word = call["user"].split(" ")[0]
        if call["phase"] == "start" and first_word == marker and call["t"] >= after:
            owner = call["caller"]
    return owner


@contextlib.asynccontextmanager
async def client(cluster: LocalCluster, name: str, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=cluster.url(name), headers={"Authorization": f"Bearer {token}"}, timeout=20
    ) as http:
        yield http
