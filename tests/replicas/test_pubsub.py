"""PostgreSQL LISTEN/NOTIFY between replicas (spec §5.7), on a throwaway cluster.

In-process: two `PgPubSub` connections, and two whole replicas (store, worker,
hub) in this process sharing one database — what one commits, the other hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from chatd.config import load_settings
from chatd.server import Replica, build
from chatd.store import ChatStatus, PgPubSub, Store
from chatd.store.testing import TemporaryPostgres
from chatd.types import TextPart

KEY = Fernet.generate_key()

Heard = list[tuple[str, dict[str, Any]]]


@pytest.fixture
async def postgres() -> AsyncIterator[TemporaryPostgres]:
    cluster = TemporaryPostgres()
    cluster.start()
    try:
        await cluster.execute('CREATE DATABASE "chatd"')
        yield cluster
    finally:
        cluster.stop()


async def _listening(url: str, origin: str) -> tuple[PgPubSub, Heard]:
    heard: Heard = []
    pubsub = PgPubSub(url, origin)
    pubsub.handler = lambda channel, data: heard.append((channel, data))
    await pubsub.start()
    assert pubsub.connected.is_set()
    return pubsub, heard


async def _until(check: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - notifications arrive on another connection
            await asyncio.sleep(0.02)


async def test_notifications_reach_other_replicas_not_the_sender(
    postgres: TemporaryPostgres,
) -> None:
    url = postgres.url("chatd")
    store = await Store.open(url, data_dir=Path("/nonexistent"), secret_key=KEY)
    a, heard_a = await _listening(url, "worker-a")
    b, heard_b = await _listening(url, "worker-b")
    try:
        user = await store.create_user("kim")
        store.notifier = a
        chat = await store.create_chat(user.id, [TextPart("hello")])
        await _until(lambda: any(ch == "chatd_wake" for ch, _ in heard_b))
        chat_hint = next(data for ch, data in heard_b if ch == "chatd_chat")
        assert chat_hint["c"] == chat.id
        assert chat_hint["v"] == chat.snapshot_version
        assert chat_hint["s"] == ChatStatus.PENDING
        assert chat_hint["u"] == user.id
        # 250 chats flushed at once: split into payloads under PostgreSQL's 8000 bytes.
        a.events_written([(f"chat-{i:04d}-{'x' * 30}", i) for i in range(250)])
        await _until(lambda: sum(ch == "chatd_events" for ch, _ in heard_b) == 3)
        flushed = [pair for ch, data in heard_b if ch == "chatd_events" for pair in data["e"]]
        assert [seq for _, seq in flushed] == list(range(250))
        await asyncio.sleep(0.2)
        assert heard_a == []  # a replica never hears itself
    finally:
        await a.close()
        await b.close()
        await store.close()


async def test_a_lost_connection_reconnects_and_resynchronises(
    postgres: TemporaryPostgres,
) -> None:
    url = postgres.url("chatd")
    a, _ = await _listening(url, "worker-a")
    b, heard_b = await _listening(url, "worker-b")
    resyncs: list[bool] = []
    b.on_reconnect = lambda: resyncs.append(True)
    try:
        postgres.stop_server("fast")
        await _until(lambda: not b.connected.is_set())
        postgres.start_server()
        await _until(lambda: resyncs == [True] and a.connected.is_set(), within=30)
        a.events_written([("chat-1", 7)])
        await _until(lambda: ("chatd_events", {"e": [["chat-1", 7]], "o": "worker-a"}) in heard_b)
    finally:
        await a.close()
        await b.close()


async def test_a_commit_on_one_replica_reaches_the_other_replicas_watchers(
    postgres: TemporaryPostgres, tmp_path: Path
) -> None:
    """The chat list watch and the chat stream of replica B follow a chat replica A runs."""
    url = postgres.url("chatd")
    replicas: list[Replica] = []
    for name in ("a", "b"):
        settings = load_settings(
            {"CHATD_DATA_DIR": str(tmp_path / name), "CHATD_SECRET_KEY": KEY.decode()},
            database_url=url,
            replica_id=name,
            lease_ttl=3.0,
            heartbeat_interval=0.5,
            acquire_interval=0.2,
            sync_interval=0.5,
        )
        replicas.append(await build(settings))
    a, b = replicas
    b.worker.draining = True  # only A runs chats; B serves watchers
    a.start()
    try:
        user = await a.store.create_user("kim")
        listing = b.worker.list_watch.frames(user.id, keepalive=30)
        watching = asyncio.ensure_future(anext(listing))
        await asyncio.sleep(0)
        chat = await a.store.create_chat(user.id, [TextPart("hello there")])
        first = await asyncio.wait_for(watching, 10)
        assert b"chat_created" in first and chat.id.encode() in first

        subscription = b.hub.subscribe(chat.id, 0)
        await b.worker.relay.follow(chat.id)
        frames: list[bytes] = []

        async def read() -> None:
            async for chunk in subscription.live():
                frames.append(chunk)
                if b'"status":"waiting"' in chunk:
                    return

        await asyncio.wait_for(read(), 20)
        stream = b"".join(frames)
        assert b"event: message_part" in stream and b"event: message\n" in stream
        # Same seqs as the owner's hub.
        owner_seqs = [e.seq for e in a.hub._rings[chat.id].events]
        relayed = [e.seq for e in b.hub._rings[chat.id].events]
        assert relayed and set(relayed) <= set(owner_seqs)

        # Deleted on A: B's list watchers hear it and B's streams of the chat end.
        await a.store.delete_chat(chat.id)

        async def deletion() -> bytes:
            async for frame in listing:
                if b"chat_deleted" in frame:
                    return frame
            raise AssertionError("the list watch ended")

        assert chat.id.encode() in await asyncio.wait_for(deletion(), 10)
        assert subscription.closed_reason == "deleted"
        await listing.aclose()
    finally:
        for replica in replicas:
            await replica.stop()
