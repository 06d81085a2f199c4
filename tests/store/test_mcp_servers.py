"""MCP servers in the store (spec §3.2, §7.4): CRUD, write-only secrets, tool caches."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from chatd.store import InvalidRequest, NotFound, SecretBox, Store
from chatd.store._schema import mcp_servers

STDIO: dict[str, Any] = {"command": ["python3", "server.py"]}
HTTP: dict[str, Any] = {"url": "https://mcp.example.com/mcp"}


async def raw_row(store: Store, slug: str) -> dict[str, Any]:
    """The stored row as the database holds it (what an attacker with a dump sees)."""
    async with store.db.read() as conn:
        row = (await conn.execute(sa.select(mcp_servers).where(mcp_servers.c.slug == slug))).one()
    return dict(row._asdict())


async def test_create_get_list_update_delete(store: Store) -> None:
    created = await store.create_mcp_server(
        "github",
        "stdio",
        command=["github-mcp", "--read-only"],
        env={"GITHUB_TOKEN": "ghp_secret_value"},
        deny_tools=["delete_repo"],
        connect_timeout_s=5,
    )
    assert created.slug == "github" and created.transport == "stdio"
    assert created.env_names == ["GITHUB_TOKEN"] and created.header_names == []
    assert created.allow_tools == [] and created.deny_tools == ["delete_repo"]
    assert created.enabled and created.call_timeout_s == 60.0
    assert await store.get_mcp_server(created.id) == created
    web = await store.create_mcp_server(
        "docs", "streamable_http", url="https://mcp.example.com/mcp", headers={"X-Key": "k1"}
    )
    assert [s.slug for s in await store.list_mcp_servers()] == ["docs", "github"]
    assert [s.slug for s in await store.list_mcp_servers(["github", "nope"])] == ["github"]

    updated = await store.update_mcp_server(
        created.id, enabled=False, allow_tools=["search"], command=["github-mcp"]
    )
    assert not updated.enabled and updated.allow_tools == ["search"]
    assert updated.command == ["github-mcp"] and updated.env_names == ["GITHUB_TOKEN"]
    assert await store.get_mcp_server(created.id) == updated

    await store.delete_mcp_server(web.id)
    with pytest.raises(NotFound):
        await store.get_mcp_server(web.id)
    with pytest.raises(NotFound):
        await store.delete_mcp_server(web.id)
    with pytest.raises(NotFound):
        await store.update_mcp_server(web.id, enabled=True)
    with pytest.raises(NotFound):
        await store.get_mcp_server("not-a-uuid")


async def test_secret_values_are_encrypted_at_rest_and_only_revealed_to_the_worker(
    store: Store,
) -> None:
    await store.create_mcp_server("gh", "stdio", command=["gh-mcp"], env={"TOKEN": "env-secret"})
    await store.create_mcp_server(
        "web", "streamable_http", **HTTP, headers={"Authorization": "Bearer header-secret"}
    )
    for slug in ("gh", "web"):
        stored = repr(await raw_row(store, slug))
        assert "env-secret" not in stored and "header-secret" not in stored
    listed = repr(await store.list_mcp_servers())
    assert "env-secret" not in listed and "header-secret" not in listed

    revealed = {
        server.slug: secrets
        for server, secrets in await store.reveal_mcp_servers(["gh", "web", "x"])
    }
    assert revealed["gh"].env == {"TOKEN": "env-secret"} and revealed["gh"].error == ""
    assert revealed["web"].headers == {"Authorization": "Bearer header-secret"}
    assert set(revealed) == {"gh", "web"}
    assert "env-secret" not in repr(revealed["gh"])  # never into a log line


async def test_secrets_under_another_key_are_reported_not_raised(store: Store) -> None:
    await store.create_mcp_server("gh", "stdio", command=["gh-mcp"], env={"TOKEN": "s"})
    store.secrets = SecretBox(Fernet.generate_key())  # the deployment's key changed
    [(server, secrets)] = await store.reveal_mcp_servers(["gh"])
    assert server.env_names == ["TOKEN"]
    assert secrets.env == {} and "cannot be decrypted" in secrets.error


async def test_slugs_are_unique(store: Store) -> None:
    first = await store.create_mcp_server("one", "stdio", **STDIO)
    second = await store.create_mcp_server("two", "stdio", **STDIO)
    with pytest.raises(InvalidRequest) as clash:
        await store.create_mcp_server("one", "streamable_http", **HTTP)
    assert clash.value.kind == "conflict"
    with pytest.raises(InvalidRequest) as renamed:
        await store.update_mcp_server(second.id, slug="one")
    assert renamed.value.kind == "conflict"
    assert (await store.get_mcp_server(second.id)).slug == "two"
    assert (await store.update_mcp_server(first.id, slug="uno")).slug == "uno"


@pytest.mark.parametrize(
    ("slug", "transport", "fields", "says"),
    [
        ("Bad", "stdio", STDIO, "slug"),
        ("a__b", "stdio", STDIO, "slug"),
        ("_a", "stdio", STDIO, "slug"),
        ("x" * 33, "stdio", STDIO, "slug"),
        ("ok", "sse", STDIO, "transport"),
        ("ok", "stdio", {}, "needs a command"),
        ("ok", "stdio", {"command": [" "]}, "needs a command"),
        ("ok", "stdio", {**STDIO, **HTTP}, "url and headers"),
        ("ok", "stdio", {**STDIO, "headers": {"A": "b"}}, "url and headers"),
        ("ok", "streamable_http", {}, "needs a url"),
        ("ok", "streamable_http", {**HTTP, "env": {"A": "b"}}, "command and env"),
        ("ok", "stdio", {**STDIO, "call_timeout_s": 0}, "call_timeout_s"),
        ("ok", "stdio", {**STDIO, "connect_timeout_s": -1}, "connect_timeout_s"),
    ],
)
async def test_invalid_servers_are_refused(
    store: Store, slug: str, transport: str, fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await store.create_mcp_server(slug, transport, **fields)
    assert refused.value.kind == "invalid_request" and says in refused.value.message
    assert await store.list_mcp_servers() == []


async def test_update_replaces_given_secrets_and_keeps_the_others(store: Store) -> None:
    web = await store.create_mcp_server(
        "web", "streamable_http", **HTTP, headers={"A": "1", "B": "2"}
    )
    await store.update_mcp_server(web.id, url="https://other.example.com/mcp")
    [(_, kept)] = await store.reveal_mcp_servers(["web"])
    assert kept.headers == {"A": "1", "B": "2"}
    replaced = await store.update_mcp_server(web.id, headers={"C": "3"})
    assert replaced.header_names == ["C"]
    [(_, secrets)] = await store.reveal_mcp_servers(["web"])
    assert secrets.headers == {"C": "3"}
    assert (await store.update_mcp_server(web.id, headers={})).header_names == []


async def test_changing_the_transport_drops_the_other_transports_fields(store: Store) -> None:
    server = await store.create_mcp_server("flip", "stdio", command=["srv"], env={"TOKEN": "t"})
    with pytest.raises(InvalidRequest):  # a streamable_http server needs its url
        await store.update_mcp_server(server.id, transport="streamable_http")
    web = await store.update_mcp_server(
        server.id, transport="streamable_http", url="http://127.0.0.1:1/mcp", headers={"H": "v"}
    )
    assert web.command == [] and web.env_names == [] and web.header_names == ["H"]
    back = await store.update_mcp_server(server.id, transport="stdio", command=["srv2"])
    assert back.url is None and back.header_names == [] and back.command == ["srv2"]
    with pytest.raises(InvalidRequest):  # url on a stdio server
        await store.update_mcp_server(server.id, url="http://127.0.0.1:1/mcp")
    with pytest.raises(InvalidRequest) as unknown:
        await store.update_mcp_server(server.id, colour="blue")
    assert "colour" in unknown.value.message


async def test_tool_cache_refresh(store: Store) -> None:
    server = await store.create_mcp_server("calc", "stdio", **STDIO)
    assert server.tool_cache == []
    tools = [
        {"name": "add", "description": "Add.", "input_schema": {"type": "object"}},
        {"name": "echo", "input_schema": {"type": "object", "properties": {}}},
    ]
    await store.refresh_mcp_tool_cache(server.id, tools)
    refreshed = await store.get_mcp_server(server.id)
    assert refreshed.tool_cache == tools
    assert refreshed.updated_at == server.updated_at  # a listing is not a config change
    [(revealed, _)] = await store.reveal_mcp_servers(["calc"])
    assert revealed.tool_cache == tools
    await store.delete_mcp_server(server.id)
    await store.refresh_mcp_tool_cache(server.id, tools)  # deleted meanwhile: ignored
