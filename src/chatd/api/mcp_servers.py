"""Admin routes for MCP servers (service spec §6.4, §7.4): `/api/chats/mcp-servers`.

Admin tokens only (403 otherwise). Secrets are write-only: `env` values (stdio)
and `headers` values (streamable HTTP) are accepted, stored encrypted, and never
returned — responses name the variables and headers that are set (`env_names`,
`header_names`). Cross-field rules (a stdio server needs a command, an HTTP one a
url) are the store's; this module checks request shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field, StringConstraints, model_validator

from chatd.api.deps import Admin, store_of
from chatd.api.errors import ApiError
from chatd.api.schemas import McpSlug, Strict, json_response
from chatd.store import McpServer
from chatd.stream.wire import timestamp

__all__ = ["router"]

router = APIRouter(prefix="/api/chats", tags=["admin"])

# No NUL anywhere: neither argv, environment nor PostgreSQL text can hold one.
Arg = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")]
EnvValue = Annotated[str, StringConstraints(max_length=32768, pattern=r"^[^\x00]*$")]
# RFC 9110 field names; values printable ASCII (httpx sends nothing else).
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=8192, pattern=r"^[\t\x20-\x7e]*$")]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
ToolName = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
# A server that takes longer than 10 minutes to start, or an hour per call, is broken.
ConnectTimeout = Annotated[float, Field(gt=0, le=600)]
CallTimeout = Annotated[float, Field(gt=0, le=3600)]


def _unique_header_names(headers: dict[str, str] | None) -> None:
    names = [name.lower() for name in headers or {}]
    if len(names) != len(set(names)):
        raise ValueError("header names must differ in more than letter case")


class _McpServerFields(Strict):
    slug: McpSlug
    allow_tools: list[ToolName] = Field(default_factory=list, max_length=1024)
    deny_tools: list[ToolName] = Field(default_factory=list, max_length=1024)
    enabled: bool = True
    connect_timeout_s: ConnectTimeout = 10.0
    call_timeout_s: CallTimeout = 60.0


class StdioMcpServerIn(_McpServerFields):
    """A server chatd starts as a child process: `command` is its argv (program first),
    `env` extra environment variables (values write-only)."""

    transport: Literal["stdio"]
    command: list[Arg] = Field(min_length=1, max_length=256)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=256)


class HttpMcpServerIn(_McpServerFields):
    """A server reached over streamable HTTP at `url`, with static `headers` (values
    write-only)."""

    transport: Literal["streamable_http"]
    url: Url
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _headers(self) -> HttpMcpServerIn:
        _unique_header_names(self.headers)
        return self


McpServerIn = Annotated[StdioMcpServerIn | HttpMcpServerIn, Field(discriminator="transport")]


class McpServerPatch(Strict):
    """Fields to change. `env` / `headers` replace the whole stored set (`{}` clears it);
    omitted, they are kept. Changing `transport` drops the other transport's fields."""

    slug: McpSlug | None = None
    transport: Literal["stdio", "streamable_http"] | None = None
    command: list[Arg] | None = Field(default=None, max_length=256)
    env: dict[EnvName, EnvValue] | None = Field(default=None, max_length=256)
    url: Url | None = None
    headers: dict[HeaderName, HeaderValue] | None = Field(default=None, max_length=64)
    allow_tools: list[ToolName] | None = Field(default=None, max_length=1024)
    deny_tools: list[ToolName] | None = Field(default=None, max_length=1024)
    enabled: bool | None = None
    connect_timeout_s: ConnectTimeout | None = None
    call_timeout_s: CallTimeout | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> McpServerPatch:
        # Only `url` may be cleared with null (moving a server to stdio); for the
        # others null has no meaning: omit a field to keep it.
        nulls = sorted(
            name for name in self.model_fields_set if name != "url" and getattr(self, name) is None
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; omit a field to keep it")
        _unique_header_names(self.headers)
        return self


def server_json(s: McpServer) -> dict[str, Any]:
    """The MCP server resource: secret names, never values."""
    return {
        "id": s.id,
        "slug": s.slug,
        "transport": s.transport,
        "command": s.command,
        "env_names": s.env_names,
        "url": s.url,
        "header_names": s.header_names,
        "allow_tools": s.allow_tools,
        "deny_tools": s.deny_tools,
        "enabled": s.enabled,
        "connect_timeout_s": s.connect_timeout_s,
        "call_timeout_s": s.call_timeout_s,
        "tool_cache": s.tool_cache,
        "created_at": timestamp(s.created_at),
        "updated_at": timestamp(s.updated_at),
    }


@router.get("/mcp-servers")
async def list_mcp_servers(request: Request, _admin: Admin) -> Response:
    """Every configured MCP server, by slug."""
    servers = await store_of(request).list_mcp_servers()
    return json_response({"mcp_servers": [server_json(s) for s in servers]})


@router.post("/mcp-servers", status_code=201)
async def create_mcp_server(body: McpServerIn, request: Request, _admin: Admin) -> Response:
    """Add an MCP server; chats use it by naming its slug in `tools.mcp_servers`."""
    fields = body.model_dump()
    server = await store_of(request).create_mcp_server(
        fields.pop("slug"), fields.pop("transport"), **fields
    )
    return json_response(
        server_json(server), 201, {"Location": f"/api/chats/mcp-servers/{server.id}"}
    )


@router.get("/mcp-servers/{server_id}")
async def get_mcp_server(server_id: str, request: Request, _admin: Admin) -> Response:
    return json_response(server_json(await store_of(request).get_mcp_server(server_id)))


@router.patch("/mcp-servers/{server_id}")
async def patch_mcp_server(
    server_id: str, body: McpServerPatch, request: Request, _admin: Admin
) -> Response:
    """Change an MCP server; runs that already connected keep their connection."""
    server = await store_of(request).update_mcp_server(
        server_id, **body.model_dump(exclude_unset=True)
    )
    return json_response(server_json(server))


@router.delete("/mcp-servers/{server_id}", status_code=204)
async def delete_mcp_server(server_id: str, request: Request, _admin: Admin) -> Response:
    """Remove an MCP server; chats that name it run without its tools."""
    await store_of(request).delete_mcp_server(server_id)
    return Response(status_code=204)


@router.api_route("/mcp-servers", methods=["PATCH", "PUT", "DELETE"], include_in_schema=False)
async def collection_methods() -> Response:
    # Without this, these methods would fall through to /api/chats/{chat_id}: the
    # reserved segment never names a chat (spec §6.4).
    raise ApiError(
        405,
        "method_not_allowed",
        "This path does not accept that method.",
        headers={"Allow": "GET, POST"},
    )
