"""MCP servers an admin configured (spec §3.2 `mcp_servers`, §7.4): CRUD and tool caches.

Secret values are write-only: every `env` value (stdio) and every header value
(streamable HTTP) is encrypted on its own with the provider keys' Fernet key, so
names stay readable without the key while values never leave the store except
through `reveal_mcp_servers`, which only the worker calls to connect. This module
checks what must hold whatever the caller (slug, transport and its fields,
timeouts); request shapes are the API's business.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._ids import new_id
from chatd.store._models import McpServer, McpServerSecrets
from chatd.store._schema import mcp_servers

__all__ = ["MCP_SLUG", "McpServers"]

# Spec §3.2: `[a-z0-9_-]{1,32}`; chatd also refuses a leading '_' or '-' and a double
# '_', because `<slug>__<tool>` must split back into slug and tool unambiguously.
MCP_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]|_(?!_)){0,31}$")
TRANSPORTS = ("stdio", "streamable_http")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_FIELDS = frozenset(
    {
        "slug",
        "transport",
        "command",
        "env",
        "url",
        "headers",
        "allow_tools",
        "deny_tools",
        "enabled",
        "connect_timeout_s",
        "call_timeout_s",
    }
)
_UNREADABLE = "its stored secrets cannot be decrypted (CHATD_SECRET_KEY changed?)"


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", message)


def _check(values: Mapping[str, Any]) -> None:
    """What every stored server satisfies; `InvalidRequest` (422) names the first problem."""
    slug = values["slug"]
    if not isinstance(slug, str) or not MCP_SLUG.match(slug):
        raise _invalid(
            "An MCP server slug is 1-32 characters of a-z, 0-9, '-' and single '_', "
            "starting with a letter or digit."
        )
    transport = values["transport"]
    if transport not in TRANSPORTS:
        raise _invalid("transport must be 'stdio' or 'streamable_http'.")
    command, url = values["command"], values["url"]
    if transport == "stdio":
        if not command or not all(isinstance(a, str) for a in command) or not command[0].strip():
            raise _invalid("A stdio MCP server needs a command (argv list, program first).")
        if url or values["headers"]:
            raise _invalid("url and headers are for streamable_http servers; omit them.")
    else:
        if not url:
            raise _invalid("A streamable_http MCP server needs a url.")
        if command or values["env"]:
            raise _invalid("command and env are for stdio servers; omit them.")
    for name in ("connect_timeout_s", "call_timeout_s"):
        timeout = values[name]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise _invalid(f"{name} must be a positive number of seconds.")
    if not isinstance(values["enabled"], bool):
        raise _invalid("enabled must be true or false.")


class McpServers(StoreBase):
    def _seal(self, values: Mapping[str, str]) -> dict[str, str]:
        box = self._box()
        return {name: box.encrypt(value) for name, value in values.items()}

    async def create_mcp_server(
        self,
        slug: str,
        transport: str,
        *,
        command: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        allow_tools: Sequence[str] = (),
        deny_tools: Sequence[str] = (),
        enabled: bool = True,
        connect_timeout_s: float = 10.0,
        call_timeout_s: float = 60.0,
    ) -> McpServer:
        """Add a server; `env` and `headers` values are stored encrypted. An empty
        `allow_tools` allows every tool. A slug in use is a `conflict` (409)."""
        values: dict[str, Any] = {
            "slug": slug,
            "transport": transport,
            "command": list(command),
            "env": dict(env or {}),
            "url": url or None,
            "headers": dict(headers or {}),
            "allow_tools": list(allow_tools),
            "deny_tools": list(deny_tools),
            "enabled": enabled,
            "connect_timeout_s": connect_timeout_s,
            "call_timeout_s": call_timeout_s,
        }
        _check(values)
        now = self.clock()
        row = self._row(values) | {
            "id": new_id(),
            "tool_cache": [],
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.write() as conn:
                await conn.execute(sa.insert(mcp_servers).values(row))
        except IntegrityError as err:
            raise InvalidRequest("conflict", f"An MCP server with slug {slug!r} exists.") from err
        return _server(row)

    def _row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Columns from checked values; secret values sealed one by one."""
        row = {name: values[name] for name in _FIELDS - {"env", "headers"}}
        row["env"] = self._seal(values["env"])
        row["headers_ciphertext"] = self._seal_headers(values["headers"])
        return row

    def _seal_headers(self, headers: Mapping[str, str]) -> str | None:
        # One text column: a JSON object of header name -> ciphertext.
        return msgspec.json.encode(self._seal(headers)).decode() if headers else None

    async def get_mcp_server(self, server_id: str) -> McpServer:
        async with self.db.read() as conn:
            return _server(await _server_row(conn, server_id))

    async def list_mcp_servers(self, slugs: Collection[str] | None = None) -> list[McpServer]:
        """Every server by slug, or only those named in `slugs`."""
        query = sa.select(mcp_servers).order_by(mcp_servers.c.slug)
        if slugs is not None:
            query = query.where(mcp_servers.c.slug.in_(list(slugs)))
        async with self.db.read() as conn:
            rows = await conn.execute(query)
            return [_server(row._asdict()) for row in rows]

    async def update_mcp_server(self, server_id: str, **changes: Any) -> McpServer:
        """Change fields (those of `create_mcp_server`). `env` and `headers` replace the
        stored set (`{}` clears it); changing the transport drops the other transport's
        fields. The result must be a valid server (422 otherwise); a taken slug is 409."""
        unknown = set(changes) - _FIELDS
        if unknown:
            raise _invalid(f"Unknown MCP server fields {sorted(unknown)}.")
        try:
            async with self.db.write() as conn:
                current = await _server_row(conn, server_id)
                values = _merge(current, changes)
                _check(values)
                update = {name: values[name] for name in _FIELDS - {"env", "headers"}}
                # Secrets not given keep their ciphertext (they are never decrypted here).
                if "env" in changes or not values["env"]:
                    update["env"] = self._seal(values["env"])
                if "headers" in changes or not values["headers"]:
                    update["headers_ciphertext"] = self._seal_headers(values["headers"])
                update["updated_at"] = self.clock()
                await conn.execute(
                    sa.update(mcp_servers).where(mcp_servers.c.id == server_id).values(update)
                )
        except IntegrityError as err:
            raise InvalidRequest(
                "conflict", f"An MCP server with slug {changes.get('slug')!r} exists."
            ) from err
        return _server(current | update)

    async def delete_mcp_server(self, server_id: str) -> None:
        """Remove a server; chats that name its slug run without it."""
        if not _UUID.match(server_id):
            raise NotFound("MCP server", server_id)
        async with self.db.write() as conn:
            result = await conn.execute(sa.delete(mcp_servers).where(mcp_servers.c.id == server_id))
        if result.rowcount == 0:
            raise NotFound("MCP server", server_id)

    async def refresh_mcp_tool_cache(self, server_id: str, tools: Sequence[Any]) -> None:
        """Store a server's latest tool listing (JSON objects: name, description,
        input_schema). A server deleted meanwhile is ignored."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(mcp_servers)
                .where(mcp_servers.c.id == server_id)
                .values(tool_cache=msgspec.to_builtins(list(tools)))
            )

    async def reveal_mcp_servers(
        self, slugs: Collection[str]
    ) -> list[tuple[McpServer, McpServerSecrets]]:
        """The servers named in `slugs` with their secrets in clear, in one read: for the
        worker connecting a run, never for a route. Secrets that cannot be decrypted
        come back empty with `error` set."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(mcp_servers)
                .where(mcp_servers.c.slug.in_(list(slugs)))
                .order_by(mcp_servers.c.slug)
            )
            found = [row._asdict() for row in rows]
        return [(_server(row), self._open(row)) for row in found]

    def _open(self, row: Mapping[str, Any]) -> McpServerSecrets:
        box = self._box()
        try:
            env = {name: box.decrypt(value) for name, value in (row["env"] or {}).items()}
            sealed = row["headers_ciphertext"]
            headers_sealed: dict[str, str] = msgspec.json.decode(sealed) if sealed else {}
            headers = {name: box.decrypt(value) for name, value in headers_sealed.items()}
        except (ValueError, msgspec.DecodeError):
            return McpServerSecrets(error=_UNREADABLE)
        return McpServerSecrets(env=env, headers=headers)


def _merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values with `changes` applied. Stored secret values stand in as
    placeholders: only which names are set matters to `_check`."""
    values = {name: current[name] for name in _FIELDS - {"env", "headers"}}
    values["env"] = dict.fromkeys(current["env"] or {}, "")
    values["headers"] = dict.fromkeys(_header_names(current), "")
    if changes.get("transport", current["transport"]) != current["transport"]:
        stale = ("url", "headers") if changes["transport"] == "stdio" else ("command", "env")
        for name in stale:
            values[name] = None
    values.update(changes)
    values["command"] = list(values["command"] or [])
    values["env"] = dict(values["env"] or {})
    values["headers"] = dict(values["headers"] or {})
    values["url"] = values["url"] or None
    values["allow_tools"] = list(values["allow_tools"] or [])
    values["deny_tools"] = list(values["deny_tools"] or [])
    return values


def _header_names(row: Mapping[str, Any]) -> list[str]:
    sealed = row.get("headers_ciphertext")
    return sorted(msgspec.json.decode(sealed)) if sealed else []


def _server(row: Mapping[str, Any]) -> McpServer:
    return McpServer(
        id=row["id"],
        slug=row["slug"],
        transport=row["transport"],
        command=list(row["command"] or []),
        env_names=sorted(row["env"] or {}),
        url=row["url"],
        header_names=_header_names(row),
        allow_tools=list(row["allow_tools"] or []),
        deny_tools=list(row["deny_tools"] or []),
        enabled=row["enabled"],
        connect_timeout_s=row["connect_timeout_s"],
        call_timeout_s=row["call_timeout_s"],
        tool_cache=list(row["tool_cache"] or []),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _server_row(conn: AsyncConnection, server_id: str) -> dict[str, Any]:
    """The server's row as a dict; NotFound for an unknown or malformed id."""
    if _UUID.match(server_id):
        query = sa.select(mcp_servers).where(mcp_servers.c.id == server_id)
        row = (await conn.execute(query)).first()
        if row is not None:
            return row._asdict()
    raise NotFound("MCP server", server_id)
