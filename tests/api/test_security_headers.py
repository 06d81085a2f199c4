"""Every kind of response refuses framing and MIME sniffing, over real HTTP on loopback."""

from __future__ import annotations

import httpx
import pytest

from chatd.api.app import WEB_UI_POLICY
from tests.api.conftest import LiveServer

FRAME_ANCESTORS = "frame-ancestors 'none'"


def assert_security_headers(response: httpx.Response) -> str:
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    [policy] = response.headers.get_list("content-security-policy")
    assert FRAME_ANCESTORS in policy
    return policy


@pytest.mark.parametrize(
    ("path", "status", "content_type"),
    [
        ("/healthz", 200, "application/json"),
        ("/api/nope", 404, "application/json"),
        ("/api/users/me", 401, "application/json"),
        ("/metrics", 200, "text/plain"),
        ("/openapi.json", 200, "application/json"),
        ("/ui/app.js", 200, "text/javascript"),
        ("/ui/style.css", 200, "text/css"),
    ],
)
async def test_every_kind_of_response_has_the_security_headers(
    client: httpx.AsyncClient, path: str, status: int, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert assert_security_headers(response) == FRAME_ANCESTORS


async def test_the_web_ui_keeps_its_policy_and_gains_frame_ancestors(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert assert_security_headers(response) == f"{WEB_UI_POLICY}; {FRAME_ANCESTORS}"
    assert "script-src 'self';" in WEB_UI_POLICY and "default-src 'self';" in WEB_UI_POLICY


async def test_a_chat_stream_has_the_security_headers(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    user = await server.state.store.create_user("ada")
    token, _ = await server.state.store.create_api_token(user.id)
    auth = {"Authorization": f"Bearer {token}"}
    created = await client.post("/api/chats", json={"message": "hi"}, headers=auth)
    assert created.status_code == 201
    stream = f"/api/chats/{created.json()['id']}/stream"
    async with client.stream("GET", stream, headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert assert_security_headers(response) == FRAME_ANCESTORS
