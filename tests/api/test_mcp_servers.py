"""Admin routes for MCP servers over real HTTP: CRUD, write-only secrets, 403/404/405/409/422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveServer

BASE = "/api/chats/mcp-servers"
STDIO: dict[str, Any] = {
    "slug": "github",
    "transport": "stdio",
    "command": ["github-mcp", "--read-only"],
    "env": {"GITHUB_TOKEN": "ghp_env_secret"},
}
HTTP: dict[str, Any] = {
    "slug": "docs",
    "transport": "streamable_http",
    "url": "https://mcp.example.com/mcp",
    "headers": {"Authorization": "Bearer header_secret"},
}
SECRETS = ("ghp_env_secret", "header_secret")


async def _client(server: LiveServer, username: str, *, admin: bool) -> httpx.AsyncClient:
    user = await server.state.store.create_user(username, is_admin=admin)
    token, _ = await server.state.store.create_api_token(user.id)
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.fixture
async def admin(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(server, "root", admin=True) as client:
        yield client


@pytest.fixture
async def user(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(server, "plain", admin=False) as client:
        yield client


def assert_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["kind"] == kind and error["message"] and "detail" in error
    return error


def assert_no_secret(response: httpx.Response) -> None:
    for secret in SECRETS:
        assert secret not in response.text


async def test_crud_round_trip_never_returns_secret_values(admin: httpx.AsyncClient) -> None:
    created = await admin.post(BASE, json=STDIO)
    assert created.status_code == 201, created.text
    assert_no_secret(created)
    body = created.json()
    assert created.headers["location"] == f"{BASE}/{body['id']}"
    assert body["env_names"] == ["GITHUB_TOKEN"] and "env" not in body
    assert body["command"] == ["github-mcp", "--read-only"]
    assert body["enabled"] is True and body["tool_cache"] == []
    assert (body["connect_timeout_s"], body["call_timeout_s"]) == (10.0, 60.0)
    web = await admin.post(BASE, json=HTTP)
    assert web.status_code == 201, web.text
    assert_no_secret(web)
    assert web.json()["header_names"] == ["Authorization"] and "headers" not in web.json()

    listed = await admin.get(BASE)
    assert listed.status_code == 200
    assert_no_secret(listed)
    assert [s["slug"] for s in listed.json()["mcp_servers"]] == ["docs", "github"]
    one = await admin.get(f"{BASE}/{body['id']}")
    assert one.json() == body

    patched = await admin.patch(
        f"{BASE}/{body['id']}",
        json={"enabled": False, "deny_tools": ["delete_repo"], "env": {"OTHER": "v"}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["enabled"] is False
    assert patched.json()["deny_tools"] == ["delete_repo"]
    assert patched.json()["env_names"] == ["OTHER"]
    assert patched.json()["command"] == body["command"]  # untouched fields stay

    moved = await admin.patch(
        f"{BASE}/{body['id']}",
        json={"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["command"] == [] and moved.json()["env_names"] == []

    assert (await admin.delete(f"{BASE}/{body['id']}")).status_code == 204
    assert_error(await admin.get(f"{BASE}/{body['id']}"), 404, "not_found")
    assert [s["slug"] for s in (await admin.get(BASE)).json()["mcp_servers"]] == ["docs"]


async def test_ordinary_users_get_403_on_every_route(
    admin: httpx.AsyncClient, user: httpx.AsyncClient
) -> None:
    server_id = (await admin.post(BASE, json=STDIO)).json()["id"]
    for method, path, body in [
        ("GET", BASE, None),
        ("POST", BASE, STDIO | {"slug": "mine"}),
        ("GET", f"{BASE}/{server_id}", None),
        ("PATCH", f"{BASE}/{server_id}", {"enabled": False}),
        ("DELETE", f"{BASE}/{server_id}", None),
    ]:
        response = await user.request(method, path, json=body)
        assert_error(response, 403, "forbidden")
        assert_no_secret(response)
    assert (await admin.get(f"{BASE}/{server_id}")).json()["enabled"] is True


async def test_unknown_ids_are_404(admin: httpx.AsyncClient) -> None:
    for server_id in ("0193a8a8-0000-7000-8000-000000000000", "not-a-uuid"):
        assert_error(await admin.get(f"{BASE}/{server_id}"), 404, "not_found")
        patch = await admin.patch(f"{BASE}/{server_id}", json={"enabled": False})
        assert_error(patch, 404, "not_found")
        assert_error(await admin.delete(f"{BASE}/{server_id}"), 404, "not_found")


async def test_slug_clash_is_409(admin: httpx.AsyncClient) -> None:
    first = (await admin.post(BASE, json=STDIO)).json()
    assert_error(await admin.post(BASE, json=HTTP | {"slug": "github"}), 409, "conflict")
    other = (await admin.post(BASE, json=HTTP)).json()
    renamed = await admin.patch(f"{BASE}/{other['id']}", json={"slug": first["slug"]})
    assert_error(renamed, 409, "conflict")
    assert (await admin.get(f"{BASE}/{other['id']}")).json()["slug"] == "docs"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (STDIO | {"colour": "blue"}, "colour"),  # unknown fields are refused
        (STDIO | {"slug": "GitHub"}, "slug"),
        (STDIO | {"slug": "a__b"}, "slug"),
        (STDIO | {"slug": ""}, "slug"),
        (STDIO | {"slug": "x" * 33}, "slug"),
        (STDIO | {"transport": "sse"}, "transport"),
        (STDIO | {"env": {"BAD-NAME": "v"}}, "env"),
        (STDIO | {"command": ["nul\x00byte"]}, "command"),
        (HTTP | {"url": "ftp://example.com"}, "url"),
        (HTTP | {"headers": {"Bad Header": "v"}}, "headers"),
        (HTTP | {"headers": {"X-A": "line\r\nbreak"}}, "headers"),
        (HTTP | {"headers": {"X-A": "1", "x-a": "2"}}, "body"),
        (STDIO | {"call_timeout_s": 0}, "call_timeout_s"),
        (STDIO | {"connect_timeout_s": "soon"}, "connect_timeout_s"),
    ],
)
async def test_malformed_bodies_are_422_with_fields(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    error = assert_error(await admin.post(BASE, json=body), 422, "invalid_request")
    assert field in error["detail"], error
    assert error["fields"]
    assert (await admin.get(BASE)).json()["mcp_servers"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"slug": "s", "transport": "stdio"}, "command"),
        ({"slug": "s", "transport": "stdio", "command": []}, "command"),
        ({"slug": "s", "transport": "stdio", "command": [" "]}, "needs a command"),
        ({"slug": "s", "transport": "streamable_http"}, "url"),
        ({"slug": "s", "command": ["srv"]}, "transport"),
        (STDIO | {"url": "https://example.com/mcp"}, "url"),
        (STDIO | {"headers": {"A": "b"}}, "headers"),
        (HTTP | {"command": ["srv"]}, "command"),
        (HTTP | {"env": {"A": "b"}}, "env"),
    ],
)
async def test_a_transport_without_its_fields_or_with_the_others_is_422(
    admin: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    error = assert_error(await admin.post(BASE, json=body), 422, "invalid_request")
    assert says in error["message"] + error["detail"], error


async def test_patch_refuses_nulls_and_invalid_results(admin: httpx.AsyncClient) -> None:
    server_id = (await admin.post(BASE, json=STDIO)).json()["id"]
    path = f"{BASE}/{server_id}"
    assert_error(await admin.patch(path, json={"enabled": None}), 422, "invalid_request")
    assert_error(await admin.patch(path, json={"command": []}), 422, "invalid_request")
    assert_error(await admin.patch(path, json={"nope": 1}), 422, "invalid_request")
    to_http = await admin.patch(path, json={"transport": "streamable_http"})  # no url
    assert_error(to_http, 422, "invalid_request")
    after = (await admin.get(path)).json()
    assert after["transport"] == "stdio" and after["env_names"] == ["GITHUB_TOKEN"]


async def test_the_reserved_segment_never_reaches_the_chat_routes(
    admin: httpx.AsyncClient,
) -> None:
    for method in ("PATCH", "PUT", "DELETE"):
        response = await admin.request(method, BASE, json={})
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, POST"


async def test_chats_may_only_name_configured_servers(
    admin: httpx.AsyncClient, user: httpx.AsyncClient
) -> None:
    await admin.post(BASE, json=STDIO)
    unknown = await user.post(
        "/api/chats", json={"message": "hi", "tools": {"mcp_servers": ["github", "nope"]}}
    )
    error = assert_error(unknown, 422, "invalid_request")
    assert "nope" in error["detail"] and "github" not in error["detail"]
    bad_slug = await user.post(
        "/api/chats", json={"message": "hi", "tools": {"mcp_servers": ["No Such"]}}
    )
    assert_error(bad_slug, 422, "invalid_request")
    assert (await user.get("/api/chats")).json()["chats"] == []
    created = await user.post(
        "/api/chats", json={"message": "hi", "tools": {"mcp_servers": ["github"]}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["tools"]["mcp_servers"] == ["github"]


async def test_chats_may_not_name_a_disabled_server(
    admin: httpx.AsyncClient, user: httpx.AsyncClient
) -> None:
    await admin.post(BASE, json=STDIO)
    await admin.post(BASE, json={**HTTP, "enabled": False})
    refused = await user.post(
        "/api/chats", json={"message": "hi", "tools": {"mcp_servers": ["github", "docs"]}}
    )
    error = assert_error(refused, 422, "invalid_request")
    assert error["detail"] == "disabled MCP servers ['docs']"
    assert "enabled" in error["message"]
    assert (await user.get("/api/chats")).json()["chats"] == []


async def test_the_schema_documents_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths[BASE]) == {"get", "post"}
    assert set(paths[BASE + "/{server_id}"]) == {"get", "patch", "delete"}
