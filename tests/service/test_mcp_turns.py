"""MCP servers through whole turns of a live replica (spec §7.4): an admin registers a
real stdio server (tests/tools/mcp_server.py), a user's chat names it, the scripted
model calls its tools."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import event

from chatd.store import SecretBox, Store
from tests.service.conftest import LiveReplica
from tests.service.test_turns import wait_status
from tests.tools.helpers import is_gone
from tests.tools.test_mcp import SERVER

SERVERS = "/api/chats/mcp-servers"


async def register(client: httpx.AsyncClient, slug: str = "calc", **fields: Any) -> dict[str, Any]:
    body = {"slug": slug, "transport": "stdio", "command": [sys.executable, SERVER], **fields}
    response = await client.post(SERVERS, json=body)
    assert response.status_code == 201, response.text
    server: dict[str, Any] = response.json()
    return server


async def scripted(live: LiveReplica, name: str, *replies: dict[str, Any]) -> str:
    return await live.scripted_model(name, script=list(replies))


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [[name, json.dumps(arguments)] for name, arguments in pairs]}


async def run_chat(
    client: httpx.AsyncClient, model: str, tools: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Create a chat, wait for its turn to end; the chat and its messages."""
    created = await client.post(
        "/api/chats", json={"message": "use your tools", "model": model, "tools": tools}
    )
    assert created.status_code == 201, created.text
    chat = await wait_status(client, created.json()["id"], "waiting", "error", within=60)
    messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    return chat, messages


def tool_results(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        part["tool_name"]: part["result"]
        for message in messages
        for part in message["parts"]
        if part["type"] == "tool_result"
    }


@contextmanager
def statements_on(store: Store, table: str) -> Iterator[list[str]]:
    """Every SQL statement the store sends that names `table` (both SQLite engines)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if table in statement:
            seen.append(statement.split()[0].upper())

    engines = [store.db.engine.sync_engine]
    reader = getattr(store.db, "_read_engine", None)
    if reader is not None:
        engines.append(reader.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_a_chat_uses_the_tools_of_an_admin_configured_stdio_server(
    live: LiveReplica,
) -> None:
    admin = await live.token("root", admin=True)
    user = await live.token("ada")
    model = await scripted(
        live,
        "mcp-user",
        calls(
            ("calc__add", {"a": 2, "b": 3}),
            ("calc__getenv", {"name": "CALC_TOKEN"}),
            ("calc__pid", {}),
        ),
        {"text": "2 + 3 = 5"},
    )
    async with live.client(admin) as client:
        server = await register(client, env={"CALC_TOKEN": "token-from-the-store"})
        assert server["tool_cache"] == []
    async with live.client(user) as client:
        chat, messages = await run_chat(client, model, {"mcp_servers": ["calc"]})
    assert chat["status"] == "waiting", chat["last_error"]
    results = tool_results(messages)
    assert results["calc__add"] == {"type": "text", "text": "5"}
    # The env secret reached the server process, decrypted, and nowhere else.
    assert results["calc__getenv"] == {"type": "text", "text": "token-from-the-store"}
    assert messages[-1]["parts"] == [{"type": "text", "text": "2 + 3 = 5"}]

    async with live.client(admin) as client:
        cached = (await client.get(f"{SERVERS}/{server['id']}")).json()
    names = {tool["name"] for tool in cached["tool_cache"]}
    assert {"add", "echo", "getenv", "pid"} <= names
    add = next(tool for tool in cached["tool_cache"] if tool["name"] == "add")
    assert add["input_schema"]["required"] == ["a", "b"]

    # The stdio server lived for the run only: closed when the runner ended.
    pid = int(results["calc__pid"]["text"])
    async with asyncio.timeout(10):
        while not is_gone(pid):  # noqa: ASYNC110 - a process exit has no event here
            await asyncio.sleep(0.05)


async def test_an_unreachable_server_offers_its_cached_tools_and_the_turn_completes(
    live: LiveReplica,
) -> None:
    admin = await live.token("root", admin=True)
    user = await live.token("bo")
    listing = await scripted(live, "mcp-listing", {"text": "connected"})
    calling = await scripted(
        live, "mcp-calling", calls(("calc__echo", {"text": "hi"})), {"text": "it failed"}
    )
    async with live.client(admin) as client:
        server = await register(client)
    async with live.client(user) as client:
        chat, _ = await run_chat(client, listing, {"mcp_servers": ["calc"]})
        assert chat["status"] == "waiting"
    async with live.client(admin) as client:
        assert (await client.get(f"{SERVERS}/{server['id']}")).json()["tool_cache"]
        broken = await client.patch(
            f"{SERVERS}/{server['id']}", json={"command": ["/nonexistent/mcp-server"]}
        )
        assert broken.status_code == 200, broken.text

    async with live.client(user) as client:
        chat, messages = await run_chat(client, calling, {"mcp_servers": ["calc"]})
    assert chat["status"] == "waiting", chat["last_error"]
    result = tool_results(messages)["calc__echo"]
    assert result["type"] == "error"
    assert result["error"].startswith("MCP server calc is unavailable: ")
    assert messages[-1]["parts"] == [{"type": "text", "text": "it failed"}]
    # The failed connection left the cache as it was.
    async with live.client(admin) as client:
        assert (await client.get(f"{SERVERS}/{server['id']}")).json()["tool_cache"]


async def test_disabled_and_deleted_servers_are_skipped_and_the_turn_completes(
    live: LiveReplica, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await live.token("root", admin=True)
    user = await live.token("cy")
    model = await scripted(
        live, "mcp-skipped", calls(("calc__echo", {"text": "hi"})), {"text": "done"}
    )
    async with live.client(admin) as client:
        calc = await register(client)
        gone = await register(client, slug="gone")
    async with live.client(user) as client:
        created = await client.post(
            "/api/chats",
            json={"message": "x", "model": model, "tools": {"mcp_servers": ["calc", "gone"]}},
        )
        assert created.status_code == 201
        await wait_status(client, created.json()["id"], "waiting", within=60)
    async with live.client(admin) as client:
        await client.patch(f"{SERVERS}/{calc['id']}", json={"enabled": False})
        await client.delete(f"{SERVERS}/{gone['id']}")
    async with live.client(user) as client:
        sent = await client.post(
            f"/api/chats/{created.json()['id']}/messages", json={"message": "again"}
        )
        assert sent.status_code == 200, sent.text
        chat = await wait_status(client, created.json()["id"], "waiting", "error", within=60)
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
    assert chat["status"] == "waiting", chat["last_error"]
    first, second = [
        p["result"] for m in messages for p in m["parts"] if p["type"] == "tool_result"
    ]
    assert first == {"type": "text", "text": "hi"}
    # Neither server's tools were offered the second time: the call found no tool.
    assert second["type"] == "error" and "not found" in second["error"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "chatd.worker.mcp"]
    assert any("MCP server calc is disabled" in w for w in warnings), warnings
    assert any("do not exist: ['gone']" in w for w in warnings), warnings


async def test_a_server_whose_secrets_cannot_be_decrypted_is_skipped(
    live: LiveReplica, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await live.token("root", admin=True)
    user = await live.token("ed")
    model = await scripted(
        live, "mcp-locked", calls(("calc__echo", {"text": "hi"})), {"text": "done"}
    )
    async with live.client(admin) as client:
        await register(client, env={"TOKEN": "sealed-with-the-old-key"})
    live.store.secrets = SecretBox(Fernet.generate_key())  # CHATD_SECRET_KEY changed
    async with live.client(user) as client:
        chat, messages = await run_chat(client, model, {"mcp_servers": ["calc"]})
    assert chat["status"] == "waiting", chat["last_error"]
    result = tool_results(messages)["calc__echo"]
    assert result["type"] == "error" and "not found" in result["error"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "chatd.worker.mcp"]
    assert any("cannot be decrypted" in w for w in warnings), warnings


async def test_only_chats_that_name_mcp_servers_read_the_table(live: LiveReplica) -> None:
    admin = await live.token("root", admin=True)
    user = await live.token("di")
    async with live.client(admin) as client:
        await register(client)
    model = await scripted(live, "mcp-quiet", {"text": "plain answer"})
    async with live.client(user) as client:
        with statements_on(live.store, "mcp_servers") as seen:
            chat, _ = await run_chat(client, model, {"builtin": ["read_file"]})
            chat, _ = await run_chat(client, model, {})
        assert chat["status"] == "waiting"
        assert seen == [], "a chat without MCP servers paid for them"

        with statements_on(live.store, "mcp_servers") as seen:
            await run_chat(client, model, {"mcp_servers": ["calc"]})  # first listing
        assert seen.count("UPDATE") == 1  # the tool cache was filled
        with statements_on(live.store, "mcp_servers") as seen:
            await run_chat(client, model, {"mcp_servers": ["calc"]})
        # Create checks the slug, the run reads the servers once; an unchanged listing
        # is not written again.
        assert seen == ["SELECT", "SELECT"]
