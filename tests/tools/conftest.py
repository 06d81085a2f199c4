"""Fixtures for the tool tests: a workspace closed after each test, its built-in tools."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatd.loop import Tool
from chatd.tools import BuiltinToolsConfig, Workspace, builtin_tools

# Short grace so tests that escalate to SIGKILL stay fast.
CONFIG = BuiltinToolsConfig(kill_grace=0.3)


@pytest.fixture
async def workspace(tmp_path: Path) -> AsyncIterator[Workspace]:
    async with Workspace(tmp_path / "ws", chat_id="chat-1") as ws:
        yield ws


@pytest.fixture
def tools(workspace: Workspace) -> dict[str, Tool]:
    return {tool.name: tool for tool in builtin_tools(workspace, CONFIG)}
