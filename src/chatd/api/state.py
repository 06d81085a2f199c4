"""`AppState`: what the routes share, one per process (store, hub, metrics, policies).

The server builds it and `create_app` hangs it on the app; routes reach it through
`chatd.api.deps`. It holds values and defaults only: no routes, no requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from chatd.api.sse import SSE_KEEPALIVE, SSE_WRITE_DEADLINE
from chatd.loop.metrics import Metrics
from chatd.store import Store
from chatd.stream.hub import StreamHub
from chatd.stream.watch import ChatListWatch

__all__ = ["AppState"]


@dataclass
class AppState:
    """What the routes need, shared by the whole process."""

    store: Store
    hub: StreamHub
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: Metrics | None = None
    ready_check: Callable[[], Awaitable[bool]] | None = None
    metrics_token: str | None = None
    draining: bool = False
    sse_keepalive: float = SSE_KEEPALIVE
    sse_write_deadline: float = SSE_WRITE_DEADLINE
    list_watch: ChatListWatch = field(default_factory=ChatListWatch)
    # Called once a watcher is subscribed to a chat: starts relaying other replicas'
    # events for it into the local hub (the worker's relay).
    follow_chat: Callable[[str], Awaitable[None]] | None = None
    # Shown by /readyz: which replica and worker answered.
    identity: dict[str, str] = field(default_factory=dict)
    # Which built-in tools users may enable by default (CHATD_BUILTIN_TOOLS; admins and
    # users with an override excepted, see chatd.tools.effective_tool_policy).
    builtin_tools: str = "files"
    # Why the OS sandbox is unusable, if it is: chats asking for execute or the process
    # tools are then refused (422 sandbox_unavailable).
    sandbox_error: str | None = None
    # Where the first-start admin token is kept, named by the web UI's sign-in page
    # (None: the page names no directory).
    admin_token_path: Path | None = None

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = Metrics(self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
