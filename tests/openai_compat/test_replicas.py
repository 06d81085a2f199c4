"""The OpenAI front door on a PostgreSQL cluster: the checks of the other test modules
against a second replica, and a response resumed and cancelled through the replica
that does not run its chat."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from chatd.localcluster import LocalCluster
from tests.openai_compat import test_responses, test_tools_and_completions
from tests.openai_compat.conftest import SLOW, sdk

# Every check that runs against a given replica (not one that starts its own).
CHECKS = [
    check
    for module in (test_responses, test_tools_and_completions)
    for name, check in vars(module).items()
    if name.startswith("test_") and set(inspect.signature(check).parameters) <= {"live", "client"}
]


class Replica:
    """One replica of the cluster, as the checks use a live replica (`url`, `token`,
    `client` for chatd's own API)."""

    def __init__(self, cluster: LocalCluster, name: str) -> None:
        self.cluster = cluster
        self.url = cluster.url(name)

    async def token(self, username: str) -> str:
        return await self.cluster.user_token(username)

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=20
        )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster", replicas=2)
    try:
        await cluster.start()
        await cluster.scripted_model("slow", **SLOW)
        yield cluster
    finally:
        await cluster.stop()


@pytest.mark.timeout(300)
async def test_the_same_checks_pass_on_a_second_postgresql_replica(
    cluster: LocalCluster,
) -> None:
    second = Replica(cluster, "r2")
    for number, check in enumerate(CHECKS):
        async with sdk(second.url, await second.token(f"user{number}")) as client:
            arguments = {"live": second, "client": client}
            wanted = inspect.signature(check).parameters
            await check(**{name: arguments[name] for name in wanted})


async def _owner(cluster: LocalCluster, chat_id: str) -> str:
    """The name of the replica whose worker runs the chat."""
    store = await cluster.open_store()
    try:
        worker_id = (await store.get_chat(chat_id)).worker_id
    finally:
        await store.close()
    async with httpx.AsyncClient(timeout=5) as http:
        for name in cluster.names:
            identity = (await http.get(f"{cluster.url(name)}/readyz")).json()
            if identity["worker_id"] == worker_id:
                return name
    raise AssertionError(f"no replica runs chat {chat_id}")


@pytest.mark.timeout(180)
async def test_a_response_resumes_and_cancels_through_the_replica_that_does_not_run_it(
    cluster: LocalCluster,
) -> None:
    token = await cluster.user_token("ann")
    async with sdk(cluster.url("r1"), token) as first:
        stream = await first.responses.create(
            model="slow", input="a long story", stream=True, background=True
        )
        head = []
        async for event in stream:
            head.append(event)
            if sum(isinstance(e, ResponseTextDeltaEvent) for e in head) == 5:
                break
        await stream.close()
    created = head[0].response  # type: ignore[union-attr]
    assert created.conversation is not None
    owner = await _owner(cluster, created.conversation.id)
    other = next(name for name in cluster.names if name != owner)
    async with sdk(cluster.url(other), token) as elsewhere:
        rest = [
            event
            async for event in await elsewhere.responses.retrieve(
                created.id, stream=True, starting_after=head[-1].sequence_number
            )
        ]
        assert isinstance(rest[-1], ResponseCompletedEvent)
        async with sdk(cluster.url(owner), token) as at_owner:
            whole = [e async for e in await at_owner.responses.retrieve(created.id, stream=True)]
        assert [e.model_dump() for e in head + rest] == [e.model_dump() for e in whole]

        # Cancel through the other replica: the owner's runner is interrupted.
        running = await elsewhere.responses.create(
            model="slow",
            input="another long one",
            previous_response_id=created.id,
            background=True,
        )
        cancelled = await elsewhere.responses.cancel(running.id)
        assert cancelled.status == "cancelled"
        assert (await elsewhere.responses.retrieve(running.id)).status == "cancelled"
