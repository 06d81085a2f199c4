"""Bad input over real HTTP on both engines: integers parsed strictly, bodies typed
strictly, a cursor beyond the log's end, and NUL stored byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.service.conftest import SSE, LiveReplica, turn_done

# The largest SQLite INTEGER / PostgreSQL BIGINT.
MAX_INT64 = 2**63 - 1
# What `int()` or a lax parser takes for a number, and what no 64-bit column holds.
NOT_INT64 = [str(2**63), "1" + "0" * 5000, "²", "٣", "１", "+1", " 1", "1.0", "1_0", "-1"]


@pytest.fixture
async def client(live_on_both: LiveReplica) -> AsyncIterator[httpx.AsyncClient]:
    """An ordinary user's client, on SQLite and then on PostgreSQL."""
    async with live_on_both.client(await live_on_both.token("user")) as user:
        yield user


def _error(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert {"kind", "message", "detail"} <= set(error)
    return error


def _field_locs(response: httpx.Response) -> list[list[str]]:
    return [field["loc"] for field in _error(response)["fields"]]


async def _chat(client: httpx.AsyncClient, message: str = "hello", **body: Any) -> dict[str, Any]:
    created = await client.post("/api/chats", json={"message": message, **body})
    assert created.status_code == 201, created.text
    chat: dict[str, Any] = created.json()
    return chat


async def test_integer_parameters_are_ascii_digits_within_64_bits(
    client: httpx.AsyncClient,
) -> None:
    chat = await _chat(client)
    messages = f"/api/chats/{chat['id']}/messages"
    stream = f"/api/chats/{chat['id']}/stream"
    for value in NOT_INT64:
        for path, name in [(messages, "after_position"), (messages, "limit")]:
            response = await client.get(path, params={name: value})
            assert _field_locs(response) == [["query", name]], value
        assert _field_locs(await client.get("/api/chats", params={"limit": value})) == [
            ["query", "limit"]
        ]
        # Answered before the stream starts.
        response = await client.get(stream, params={"after": value})
        assert _field_locs(response) == [["query", "after"]], value
        if value == value.lstrip():  # a header value never starts with a blank
            response = await client.get(stream, headers={"Last-Event-ID": value.encode()})
            assert _field_locs(response) == [["header", "last-event-id"]], value
    for name, value in [("limit", "0"), ("limit", "1001"), ("after_position", "-1")]:
        assert _field_locs(await client.get(messages, params={name: value}))
    # The largest a column holds is a position past the end: nothing after it.
    last = await client.get(messages, params={"after_position": str(MAX_INT64)})
    assert last.status_code == 200, last.text
    assert last.json()["messages"] == [] and last.json()["has_more"] is False


async def test_every_integer_parameter_is_bounded(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    integers = [
        (path, param["name"], option)
        for path, methods in paths.items()
        for operation in methods.values()
        for param in operation.get("parameters", [])
        for option in param["schema"].get("anyOf", [param["schema"]])
        if option.get("type") == "integer"
    ]
    assert len(integers) == 5, integers
    for path, name, schema in integers:
        assert 0 <= schema["minimum"] <= schema["maximum"] <= MAX_INT64, (path, name)


async def test_a_cursor_beyond_the_log_resets_and_replays_the_log(
    client: httpx.AsyncClient,
) -> None:
    chat = await _chat(client)
    path = f"/api/chats/{chat['id']}/stream"
    first = await SSE(client, path).read_until(turn_done)
    seqs = [seq for seq, _, _ in first]
    for beyond in (MAX_INT64, max(seqs) + 1_000_000):
        resumed = await SSE(client, path, last_event_id=beyond).read_until(turn_done)
        (reset_id, reset, data), *rest = resumed
        assert (reset_id, reset, data["reason"]) == (None, "history_reset", "resume_gap")
        assert [seq for seq, _, _ in rest] == seqs
        by_query = await SSE(client, f"{path}?after={beyond}").read_until(turn_done)
        assert by_query == resumed


async def test_chat_bodies_take_no_lax_booleans_or_numbers(
    client: httpx.AsyncClient, live_on_both: LiveReplica
) -> None:
    chat = await _chat(client)
    for value in ["yes", "true", 1, 0, None]:
        response = await client.patch(f"/api/chats/{chat['id']}", json={"archived": value})
        if value is None:  # null means "leave it"
            assert response.status_code == 200, response.text
            continue
        assert _field_locs(response) == [["body", "archived"]], value
    for body in [{"title": 1}, {"title": ["x"]}]:
        response = await client.patch(f"/api/chats/{chat['id']}", json=body)
        assert _field_locs(response) == [["body", "title"]]
    response = await client.post(
        f"/api/chats/{chat['id']}/messages", json={"message": "hi", "busy_behavior": 1}
    )
    assert _field_locs(response) == [["body", "busy_behavior"]]
    assert (await client.get(f"/api/chats/{chat['id']}")).json()["archived"] is False
    async with live_on_both.client(await live_on_both.token("root", admin=True)) as admin:
        config = {"name": "c", "provider": "scripted", "model": "m"}
        for field, value in [
            ("enabled", "yes"),
            ("is_default", 1),
            ("context_limit", "8192"),
            ("context_limit", 8192.0),
            ("context_limit", 2**31),
        ]:
            response = await admin.post("/api/chats/model-configs", json={**config, field: value})
            assert _field_locs(response) == [["body", field]], (field, value)
        server = {"slug": "s", "transport": "stdio", "command": ["true"], "enabled": "yes"}
        response = await admin.post("/api/chats/mcp-servers", json=server)
        assert ["body", "stdio", "enabled"] in _field_locs(response)


async def test_lone_surrogates_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    for body in [b'{"message": "a\\ud800"}', b'{"message": "hi", "title": "\\udc00"}']:
        response = await client.post(
            "/api/chats", content=body, headers={"Content-Type": "application/json"}
        )
        assert "lone surrogate" in _error(response)["detail"]
    assert (await client.get("/api/chats")).json()["chats"] == []


@pytest.mark.parametrize("nul", ["\x00", "a\x00b\ue000"])
async def test_nul_is_stored_and_read_back_byte_for_byte(
    live_on_both: LiveReplica, nul: str
) -> None:
    slow = await live_on_both.scripted_model("slow", delta_delay=0.05)
    async with live_on_both.client(await live_on_both.token("nul")) as client:
        chat = await _chat(client, f"first {nul}", title=f"t{nul}", model=slow)
        assert chat["title"] == f"t{nul}"
        base = f"/api/chats/{chat['id']}"
        sent = (await client.post(f"{base}/messages", json={"message": f"queued {nul}"})).json()
        assert sent["queued_message"]["parts"] == [{"type": "text", "text": f"queued {nul}"}]
        assert (await client.get(f"{base}/queue")).json()["queued_messages"][0]["parts"] == [
            {"type": "text", "text": f"queued {nul}"}
        ]
        events = await SSE(client, f"{base}/stream").read_until(
            lambda _id, name, data: name == "status" and data["status"] == "waiting"
        )
        texts = [d["message"]["parts"] for _, n, d in events if n == "message" and "message" in d]
        assert [{"type": "text", "text": f"first {nul}"}] in texts
        renamed = await client.patch(base, json={"title": "\x00" * 256})
        assert renamed.json()["title"] == "\x00" * 256
        [first, *_] = (await client.get(f"{base}/messages")).json()["messages"]
        assert first["parts"] == [{"type": "text", "text": f"first {nul}"}]
        edited = await client.patch(f"{base}/messages/{first['id']}", json={"message": nul})
        assert edited.status_code == 200, edited.text
        [again, *_] = (await client.get(f"{base}/messages")).json()["messages"]
        assert again["parts"] == [{"type": "text", "text": nul}]
        # A search for NUL answers (SQLite's LIKE ends its pattern at the NUL, though).
        assert (await client.get("/api/chats", params={"q": nul})).status_code == 200
        assert (await client.get(f"{base}%00")).status_code == 404
