"""MCP server configuration and tool naming (spec §7.4); no SDK import here.

A server's tools are offered to the model as `<slug>__<tool>`; names longer than
64 characters are shortened with a hash so they stay unique, and the mapping back
to the server's own name is kept for dispatch.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import msgspec

__all__ = ["McpServerConfig", "McpToolInfo", "mcp_tool_name"]

_SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# Upstream's rule: at most 64 characters, else 55 + "_" + 8 hex digits of SHA-256.
_MAX_NAME = 64
_KEEP = 55


class McpToolInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tool as a server listed it (what `mcp_servers.tool_cache` stores)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class McpServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One MCP server as an admin configured it.

    `stdio`: `command` is the argv, `env` extra environment variables.
    `streamable_http`: `url` and static `headers`.
    """

    slug: str
    transport: Literal["stdio", "streamable_http"]
    command: tuple[str, ...] = ()
    env: dict[str, str] = {}
    url: str = ""
    headers: dict[str, str] = {}
    allow_tools: tuple[str, ...] | None = None
    deny_tools: tuple[str, ...] = ()
    enabled: bool = True
    connect_timeout_s: float = 10.0
    call_timeout_s: float = 60.0
    tool_cache: tuple[McpToolInfo, ...] = ()

    def __post_init__(self) -> None:
        if not _SLUG.match(self.slug):
            raise ValueError(
                f"MCP server slug {self.slug!r} must be letters, digits, '-' or single '_'"
            )
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.slug}: a stdio server needs a command")
        if self.transport == "streamable_http" and not self.url:
            raise ValueError(f"MCP server {self.slug}: a streamable_http server needs a url")
        if self.connect_timeout_s <= 0 or self.call_timeout_s <= 0:
            raise ValueError(f"MCP server {self.slug}: timeouts must be positive")

    def offers(self, tool_name: str) -> bool:
        """Whether the allow / deny filters let `tool_name` through (deny wins)."""
        if tool_name in self.deny_tools:
            return False
        return self.allow_tools is None or tool_name in self.allow_tools


def mcp_tool_name(slug: str, tool_name: str, *, hashed: bool = False) -> str:
    """`<slug>__<tool>` as the model sees it: provider-safe characters, ≤ 64 characters.

    `hashed` forces the hash-suffixed form, used when the plain form clashes with
    another tool's name (possible after unsafe characters became `_`).
    """
    full = f"{slug}__{tool_name}"
    name = _NOT_NAME_CHARS.sub("_", full)
    if len(name) <= _MAX_NAME and not hashed:
        return name
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:8]
    return f"{name[:_KEEP]}_{digest}"
