"""The one place chatd touches the `mcp` SDK: connect, list, call, convert results.

Imported lazily by `McpConnections`, so importing `chatd.tools` does not pay for
the SDK when no MCP server is configured. Result conversion follows spec §7.4:
text → text, image and audio → media, embedded resources → text or media, resource
links → text with the URI, structured content → JSON text, `isError` → error.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from contextlib import AsyncExitStack
from typing import TextIO

import httpx2
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    Implementation,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from chatd.loop import ToolResponse
from chatd.tools._mcp_config import McpServerConfig, McpToolInfo
from chatd.tools._output import cap_text

__all__ = ["call_tool", "connect", "describe_error", "list_tools", "to_response"]

_CLIENT_INFO = Implementation(name="chatd", version="0.1.0")
# Connect/write 30 s, read 300 s: the SDK's own defaults for a held-open stream.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
_MAX_PAGES = 100  # a server that paginates forever cannot hang a connect


async def connect(
    stack: AsyncExitStack, server: McpServerConfig, *, cwd: str | None, errlog: TextIO | None
) -> Client:
    """An initialised client whose resources (process, HTTP client) close with `stack`."""
    if server.transport == "stdio":
        params = StdioServerParameters(
            command=server.command[0],
            args=list(server.command[1:]),
            env=dict(server.env) or None,
            cwd=cwd,
        )
        transport = stdio_client(params, errlog=errlog or sys.stderr)
    else:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=dict(server.headers), timeout=_HTTP_TIMEOUT)
        )
        transport = streamable_http_client(server.url, http_client=http)
    # No response cache: every run lists afresh, and the listing refreshes tool_cache.
    client = Client(transport, client_info=_CLIENT_INFO, cache=None)
    return await stack.enter_async_context(client)


async def list_tools(client: Client) -> list[McpToolInfo]:
    tools: list[McpToolInfo] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(
            McpToolInfo(
                name=tool.name,
                description=tool.description or "",
                input_schema=dict(tool.input_schema),
            )
            for tool in page.tools
        )
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


async def call_tool(client: Client, name: str, arguments: dict[str, object]) -> ToolResponse:
    return to_response(await client.call_tool(name, arguments))


def describe_error(err: BaseException) -> str:
    """A one-line reason, looking inside the exception groups anyio raises."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _decode(data: str) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def to_response(result: CallToolResult) -> ToolResponse:
    """A chatd result from an MCP one: text capped at 32 KiB, the first media item kept."""
    texts: list[str] = []
    media: tuple[bytes, str] | None = None
    skipped_media = 0
    for block in result.content:
        payload: tuple[str, str] | None = None
        if isinstance(block, TextContent):
            texts.append(block.text)
        elif isinstance(block, ImageContent | AudioContent):
            payload = (block.data, block.mime_type)
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            if isinstance(resource, TextResourceContents):
                texts.append(resource.text)
            elif isinstance(resource, BlobResourceContents):
                payload = (resource.blob, resource.mime_type or "application/octet-stream")
        elif isinstance(block, ResourceLink):
            texts.append(f"Resource {block.name}: {block.uri}")
        if payload is not None:
            data = _decode(payload[0])
            if data is None:
                texts.append(f"[{payload[1]} content that is not valid base64 was dropped]")
            elif media is None:
                media = (data, payload[1])
            else:
                skipped_media += 1
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    if skipped_media:
        texts.append(f"[{skipped_media} more media items were not shown]")
    text = cap_text("\n".join(texts)).text
    if result.is_error:
        return ToolResponse.error(text or "the MCP tool reported an error without a message")
    if media is not None:
        return ToolResponse.media(media[0], media[1], caption=text)
    return ToolResponse.text(text)
