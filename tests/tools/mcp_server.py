"""A small MCP server for the tests, written with the same `mcp` SDK chatd uses.

Run as `python mcp_server.py` (stdio) or `python mcp_server.py http <port>`
(streamable HTTP on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import EmbeddedResource, ImageContent, ResourceLink, TextResourceContents

server = MCPServer("chatd-test")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "unreachable"


@server.tool()
def pixel() -> list[ImageContent | ResourceLink | EmbeddedResource]:
    """One image, a resource link and an embedded text resource."""
    return [
        ImageContent(data="iVBORw0KGgo=", mime_type="image/png"),
        ResourceLink(name="readme", uri="file:///readme.md"),
        EmbeddedResource(resource=TextResourceContents(uri="file:///a.txt", text="embedded")),
    ]


@server.tool()
def big(size: int) -> str:
    """A string of `size` x characters."""
    return "x" * size


@server.tool()
def getenv(name: str) -> str:
    """The value of an environment variable of the server process."""
    return os.environ.get(name, "")


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def crash() -> str:
    """Exits the server process at once."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
