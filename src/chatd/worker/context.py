"""What a runner needs from the replica that runs it.

`ChatRunner` sees its replica only through this protocol (the `Worker` is one), so
the runner never reaches into the worker's internals and the two modules import
one way: the worker imports the runner, never the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from chatd.config import Settings
from chatd.loop import Metrics, Model, Tool
from chatd.store import Chat, ModelConfig, Store
from chatd.stream.hub import StreamHub
from chatd.tools import Workspaces

__all__ = ["RunnerContext"]


class RunnerContext(Protocol):
    store: Store
    hub: StreamHub
    settings: Settings
    metrics: Metrics
    workspaces: Workspaces
    # Set by an owner with a full batch of events: the replica flushes now.
    flush_wake: asyncio.Event
    # An embedding application's extra server-side tools for every chat.
    server_tools: Callable[[Chat], list[Tool]] | None

    async def model_config(self, chat: Chat) -> ModelConfig:
        """The chat's model config (read once per turn)."""
        ...

    async def build_model(self, config: ModelConfig) -> Model:
        """The model a config describes (raises ClassifiedException)."""
        ...

    def builtin_tools(self, chat: Chat) -> list[Tool]:
        """The built-in tools, confined to the chat's workspace."""
        ...

    def request_sync(self, chat_id: str) -> None:
        """Bring the chat's stream up to date once no runner owns it."""
        ...
