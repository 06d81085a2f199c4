"""The database work of starting a turn: what runs between `POST …/messages` and the model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from chatd.store import Store
from chatd.worker.attempts import AttemptRecorder
from tests.service.conftest import SSE, running_replica, turn_done

WRITES = ("INSERT", "UPDATE", "DELETE")


@contextmanager
def transactions(store: Store) -> Iterator[list[list[str]]]:
    """Every transaction the store runs, in the order they began, each the list of its
    statements' first words and tables (`SELECT model_configs`); some may still be open.

    Transactions on different connections interleave (a read while a write is open),
    so statements are grouped by connection; an autocommit read is one of its own.
    """
    log: list[list[str]] = []
    open_on: dict[int, list[str]] = {}

    def statement(conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        words = sql.split()
        verb = words[0].upper()
        after = {"SELECT": "FROM", "INSERT": "INTO", "DELETE": "FROM", "UPDATE": "UPDATE"}
        marker = after.get(verb)
        upper = [w.upper() for w in words]
        table = words[upper.index(marker) + 1] if marker in upper else ""
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        current = None if autocommit else open_on.get(id(conn))
        if current is None:
            current = []
            log.append(current)
            if not autocommit:
                open_on[id(conn)] = current
        current.append(f"{verb} {table}")

    def ended(conn: Any) -> None:
        open_on.pop(id(conn), None)

    engines = [store.db.engine.sync_engine]
    reader = getattr(store.db, "_read_engine", None)
    if reader is not None:
        engines.append(reader.sync_engine)
    hooks = (("before_cursor_execute", statement), ("commit", ended), ("rollback", ended))
    for engine in engines:
        for name, hook in hooks:
            event.listen(engine, name, hook)
    try:
        yield log
    finally:
        for engine in engines:
            for name, hook in hooks:
                event.remove(engine, name, hook)


class ModelCall:
    """When the runner first called the model: how many transactions had begun."""

    def __init__(self) -> None:
        self.log: list[list[str]] | None = None
        self.after: int | None = None


@pytest.fixture
def first_model_call(monkeypatch: pytest.MonkeyPatch) -> ModelCall:
    mark = ModelCall()
    original = AttemptRecorder.stream

    async def stream(self: Any, call: Any) -> Any:
        if mark.after is None and mark.log is not None:
            mark.after = len(mark.log)
        return await original(self, call)

    monkeypatch.setattr(AttemptRecorder, "stream", stream)
    return mark


async def test_a_turn_reaches_the_model_after_two_write_transactions_and_one_config_read(
    tmp_path: Path, first_model_call: ModelCall
) -> None:
    # Admission by loop lag off: on a loaded machine a replica that declines to claim
    # syncs the pending chat's stream itself, which is one more (correct) write.
    async with running_replica(tmp_path, generate_titles=False, acquire_max_lag=0.0) as live:
        model = await live.scripted_model("lean", delta_delay=0.0, script=[{"text": "hi"}])
        token = await live.token("lean")
        async with live.client(token) as client:
            chat = (await client.post("/api/chats", json={"model": model, "message": "a"})).json()
            await SSE(client, f"/api/chats/{chat['id']}/stream").read_until(turn_done)
            with transactions(live.store) as log:
                first_model_call.log = log
                sent = await client.post(f"/api/chats/{chat['id']}/messages", json={"message": "b"})
                assert sent.status_code in (200, 201, 202), sent.text
                async with asyncio.timeout(20):
                    while first_model_call.after is None:  # noqa: ASYNC110 - set by the runner
                        await asyncio.sleep(0.01)
                before_model = log[: first_model_call.after]
    writes = [
        tx
        for tx in before_model
        if any(s.split()[0] in WRITES for s in tx)
        # the replica's event flush: every owned chat's new events in one transaction
        # on its own clock (spec §5.5), not a step of this turn
        and not any(s.startswith("INSERT chat_stream_") for s in tx)
        # the heartbeat: every owned chat's lease renewed on its own clock (spec §4.4)
        and tx != ["UPDATE chat_heartbeats"]
    ]
    # the send (message + status), then the claim (lease + heartbeat + first attempt)
    assert len(writes) == 2, writes
    assert "INSERT chat_messages" in writes[0]
    assert "INSERT chat_heartbeats" in writes[1]
    config_reads = [s for tx in before_model for s in tx if s == "SELECT model_configs"]
    # one by the api (the chat's model name in its response), one by the runner
    assert len(config_reads) <= 2, before_model
