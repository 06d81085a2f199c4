"""`McpConnections`: a run's connections to the chat's MCP servers, as chatd `Tool`s.

Entering it connects every server in parallel, each bounded by its connect
timeout, and lists their tools; the connections are reused by every step and
closed on exit (turn finished, lease lost, shutdown). An MCP server can never fail
a turn: a server that cannot start is logged, its cached tools are still offered,
and every call to them is an error result the model sees (spec §7.4).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from chatd.loop import Tool, ToolCall, ToolResponse
from chatd.tools._args import format_seconds
from chatd.tools._mcp_config import McpServerConfig, McpToolInfo, mcp_tool_name

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["McpConnections"]

_log = logging.getLogger("chatd.tools.mcp")


@dataclass(slots=True, eq=False)
class _Connection:
    config: McpServerConfig
    client: Client | None = None
    listing: list[McpToolInfo] | None = None
    reason: str = "it was not connected"
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class McpConnections:
    """Connections to MCP servers for one run. Use as `async with McpConnections(servers)`.

    After entering, `tools` are the chatd tools (named `<slug>__<tool>`),
    `listings` the fresh tool lists of the servers that answered (to refresh
    `tool_cache`), and `failures` the reason of every server that did not.
    """

    def __init__(
        self,
        servers: Sequence[McpServerConfig],
        *,
        cwd: str | None = None,
        errlog: TextIO | None = None,
    ) -> None:
        self._connections = [_Connection(s) for s in servers if s.enabled]
        self._cwd = cwd
        self._errlog = errlog
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tools: list[Tool] = []
        self._entered = False

    @property
    def tools(self) -> list[Tool]:
        return list(self._tools)

    @property
    def listings(self) -> dict[str, list[McpToolInfo]]:
        return {c.config.slug: list(c.listing) for c in self._connections if c.listing is not None}

    @property
    def failures(self) -> dict[str, str]:
        return {c.config.slug: c.reason for c in self._connections if c.client is None}

    async def __aenter__(self) -> McpConnections:
        if self._entered:
            raise RuntimeError("McpConnections can be entered only once")
        self._entered = True
        if not self._connections:
            return self
        # The SDK takes about a second of CPU to import: do it off the event loop,
        # once, so the first chat with an MCP server does not stall every other chat.
        await asyncio.to_thread(importlib.import_module, "chatd.tools._mcp_sdk")
        self._tasks = [
            asyncio.create_task(self._hold(c), name=f"mcp:{c.config.slug}")
            for c in self._connections
        ]
        try:
            await asyncio.gather(*(c.settled.wait() for c in self._connections))
        except BaseException:
            await self.aclose()
            raise
        self._tools = self._build_tools()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (stdio servers are stopped) and wait until they are."""
        self._closing.set()
        if not self._tasks:
            return
        try:
            await asyncio.wait(self._tasks)
        except asyncio.CancelledError:
            # The run was cancelled mid-close (lease lost, shutdown grace over): finish
            # anyway, or a holder cut off at loop exit would leave its server process
            # and pipes behind. The SDK bounds its shutdown (flush, grace, kill).
            await asyncio.wait(self._tasks)
            raise

    async def _hold(self, connection: _Connection) -> None:
        # One task per server enters and exits its client: the SDK's anyio scopes
        # must be left by the task that entered them.
        from chatd.tools import _mcp_sdk as sdk  # imported by __aenter__ already

        config = connection.config
        try:
            async with AsyncExitStack() as stack:
                try:
                    async with asyncio.timeout(config.connect_timeout_s):
                        client = await sdk.connect(
                            stack, config, cwd=self._cwd, errlog=self._errlog
                        )
                        connection.listing = await sdk.list_tools(client)
                except TimeoutError:
                    timeout = format_seconds(config.connect_timeout_s)
                    connection.reason = f"it did not answer within {timeout} s"
                    return
                except Exception as err:
                    connection.reason = sdk.describe_error(err)
                    return
                connection.client = client
                connection.settled.set()
                await self._closing.wait()
                connection.client = None
                connection.reason = "the connection was closed"
        except Exception as err:
            # The server went away mid-run, or failed while closing.
            connection.reason = f"the connection was lost ({sdk.describe_error(err)})"
            _log.warning("MCP server %s: %s", config.slug, connection.reason)
        finally:
            connection.client = None
            connection.settled.set()

    def _build_tools(self) -> list[Tool]:
        tools: list[Tool] = []
        taken: set[str] = set()
        for connection in self._connections:
            config = connection.config
            listing = connection.listing
            if listing is None:
                listing = list(config.tool_cache)
                if listing:
                    _log.warning(
                        "MCP server %s is unavailable (%s); offering its %d cached tools",
                        config.slug,
                        connection.reason,
                        len(listing),
                    )
                else:
                    _log.warning(
                        "MCP server %s is unavailable (%s) and was never listed; no tools",
                        config.slug,
                        connection.reason,
                    )
            for info in listing:
                if not config.offers(info.name):
                    continue
                name = mcp_tool_name(config.slug, info.name)
                if name in taken:
                    name = mcp_tool_name(config.slug, info.name, hashed=True)
                taken.add(name)
                tools.append(self._tool(connection, info, name))
        return tools

    @staticmethod
    def _tool(connection: _Connection, info: McpToolInfo, name: str) -> Tool:
        from chatd.tools import _mcp_sdk as sdk

        config = connection.config

        async def run(call: ToolCall) -> ToolResponse:
            client = connection.client
            if client is None:
                return ToolResponse.error(
                    f"MCP server {config.slug} is unavailable: {connection.reason}"
                )
            try:
                arguments = call.arguments()
            except ValueError as err:
                return ToolResponse.error(f"{name}: the input is not a JSON object ({err}).")
            try:
                async with asyncio.timeout(config.call_timeout_s):
                    return await sdk.call_tool(client, info.name, arguments)
            except TimeoutError:
                return ToolResponse.error(
                    f"MCP tool call timed out after {format_seconds(config.call_timeout_s)} s"
                )
            except Exception as err:
                return ToolResponse.error(
                    f"MCP server {config.slug} failed the call: {sdk.describe_error(err)}"
                )

        return Tool(
            name=name,
            description=info.description,
            run=run,
            input_schema=info.input_schema,
        )
