"""Store refusals become their HTTP answers through the app's handlers, byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.conftest import LiveServer


@pytest.fixture
async def admin(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    user = await server.state.store.create_user("root", is_admin=True)
    token, _ = await server.state.store.create_api_token(user.id)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def not_found(what: str) -> bytes:
    return (
        b'{"error":{"kind":"not_found","message":"No such %s; check the id.","detail":""}}'
        % what.encode()
    )


async def test_a_missing_resource_is_a_404_naming_it(admin: httpx.AsyncClient) -> None:
    missing = "00000000-0000-7000-8000-00000000dead"
    chat = (await admin.post("/api/chats", json={"message": "hi"})).json()
    cases = [
        (admin.get(f"/api/chats/{missing}"), "chat"),
        (
            admin.patch(f"/api/chats/{chat['id']}/messages/{missing}", json={"message": "x"}),
            "message",
        ),
        (admin.delete(f"/api/chats/{chat['id']}/queue/{missing}"), "queued message"),
        (admin.get(f"/api/chats/model-configs/{missing}"), "model config"),
        (admin.delete(f"/api/chats/provider-keys/{missing}"), "provider key"),
        (admin.get(f"/api/chats/mcp-servers/{missing}"), "MCP server"),
        (admin.patch(f"/api/users/{missing}", json={"tool_policy": None}), "user"),
    ]
    for request, what in cases:
        response = await request
        assert response.status_code == 404, (what, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.content == not_found(what)


async def test_a_rejected_transition_is_a_409_with_the_chat_state(
    admin: httpx.AsyncClient,
) -> None:
    chat = (await admin.post("/api/chats", json={"message": "hi"})).json()
    waiting = (await admin.post(f"/api/chats/{chat['id']}/interrupt")).json()["chat"]
    assert waiting["status"] == "waiting"
    response = await admin.post(f"/api/chats/{chat['id']}/interrupt")
    assert response.status_code == 409
    assert response.content == (
        b'{"error":{"kind":"invalid_state",'
        b'"message":"The chat is waiting; this is not possible right now.",'
        b'"detail":"transition interrupt is not allowed from state W",'
        b'"status":"waiting","archived":false,"snapshot_version":%d}}' % waiting["snapshot_version"]
    )


async def test_invalid_requests_are_422_and_conflicts_409(admin: httpx.AsyncClient) -> None:
    cursor = await admin.get("/api/chats", params={"cursor": "!!"})
    assert cursor.status_code == 422
    assert cursor.content == (
        b'{"error":{"kind":"invalid_request","message":"The cursor is not valid.","detail":""}}'
    )
    config = {"name": "twice", "provider": "scripted", "model": "echo"}
    assert (await admin.post("/api/chats/model-configs", json=config)).status_code == 201
    clash = await admin.post("/api/chats/model-configs", json=config)
    assert clash.status_code == 409
    assert clash.content == (
        b'{"error":{"kind":"conflict","message":"A model config named \'twice\' exists.",'
        b'"detail":""}}'
    )
