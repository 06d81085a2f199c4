"""A run's MCP servers (spec §7.4): the chat's slugs resolved, connected, caches refreshed.

Only runs of chats whose `tools.mcp_servers` names servers come here, so every
other turn pays nothing (no read of `mcp_servers`, no SDK import). An MCP server
never fails a turn: unknown, disabled and undecryptable servers are skipped with a
warning; unreachable ones offer their cached tools, whose calls return error
results (`McpConnections`); a failed cache write is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack

import msgspec

from chatd.loop import Tool
from chatd.store import McpServer, McpServerSecrets, Store
from chatd.tools import McpConnections, McpServerConfig

__all__ = ["connect_mcp_servers"]

log = logging.getLogger("chatd.worker.mcp")


async def connect_mcp_servers(
    store: Store, chat_id: str, slugs: Sequence[str], stack: AsyncExitStack, *, cwd: str
) -> list[Tool]:
    """Connect the enabled servers named in `slugs` (one read, all in parallel) and
    return their tools. The connections close with `stack`; `cwd` is where stdio
    servers start (the chat's workspace)."""
    found = await store.reveal_mcp_servers(slugs)
    missing = sorted(set(slugs) - {server.slug for server, _ in found})
    if missing:
        log.warning("chat %s names MCP servers that do not exist: %s", chat_id, missing)
    usable: list[tuple[McpServer, McpServerConfig]] = []
    for server, secrets in found:
        if not server.enabled:
            log.warning("chat %s: MCP server %s is disabled; skipped", chat_id, server.slug)
            continue
        try:
            usable.append((server, _config(server, secrets)))
        except ValueError as err:
            log.warning("chat %s: MCP server %s skipped: %s", chat_id, server.slug, err)
    if not usable:
        return []
    try:
        connections = await stack.enter_async_context(
            McpConnections([config for _, config in usable], cwd=cwd)
        )
    except Exception:
        # McpConnections turns every server failure into error results; this is a
        # bug or a broken SDK install, and still no reason to fail the turn.
        log.exception("chat %s: connecting its MCP servers failed; running without them", chat_id)
        return []
    listings = connections.listings
    for server, _ in usable:
        listing = listings.get(server.slug)
        if listing is None:
            continue
        fresh = msgspec.to_builtins(listing)
        if fresh == server.tool_cache:
            continue  # the usual case: no write
        try:
            await store.refresh_mcp_tool_cache(server.id, fresh)
        except Exception as err:
            log.warning("MCP server %s: the tool cache was not refreshed (%s)", server.slug, err)
    return connections.tools


def _config(server: McpServer, secrets: McpServerSecrets) -> McpServerConfig:
    """The tools package's view of a stored server; ValueError when it cannot be used."""
    if secrets.error:
        raise ValueError(secrets.error)
    try:
        return msgspec.convert(
            {
                "slug": server.slug,
                "transport": server.transport,
                "command": server.command,
                "env": secrets.env,
                "url": server.url or "",
                "headers": secrets.headers,
                "allow_tools": server.allow_tools or None,  # empty: every tool
                "deny_tools": server.deny_tools,
                "connect_timeout_s": server.connect_timeout_s,
                "call_timeout_s": server.call_timeout_s,
                "tool_cache": server.tool_cache,
            },
            McpServerConfig,
        )
    except msgspec.ValidationError as err:
        raise ValueError(str(err)) from None
