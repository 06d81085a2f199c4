"""The FastAPI application: health, metrics, identity, and the SSE plumbing for chat streams.

`create_app(state)` builds the app around an `AppState` (the hub, the metrics
registry, the token verifier, readiness). It owns HTTP only: every state change
goes through the store, every event through the hub.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from chatd import __version__
from chatd.api.auth import Principal
from chatd.api.errors import ApiError, install_error_handlers
from chatd.api.middleware import HttpMetrics, RequestMiddleware
from chatd.loop.metrics import Metrics
from chatd.store import Store
from chatd.types import encode
from chatd.worker.hub import StreamHub, Subscription
from chatd.worker.watch import ChatListWatch

__all__ = ["AppState", "User", "create_app", "current_user", "sse_response"]

# 15 s: proxies and load balancers close streams idle for longer (spec §5.3).
SSE_KEEPALIVE = 15.0
# 2 s: how long a browser's EventSource waits before reconnecting.
SSE_RETRY_MS = 2000
# The browser UI: static files shipped in the package (no build step), public (spec §6.2).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


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
    list_watch: ChatListWatch = field(default_factory=ChatListWatch)
    # Called once a watcher is subscribed to a chat: starts relaying other replicas'
    # events for it into the local hub (the worker's relay).
    follow_chat: Callable[[str], Awaitable[None]] | None = None
    # Shown by /readyz: which replica and worker answered.
    identity: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = Metrics(self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.chatd
    return state


async def current_user(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer …` (or `?access_token=` on SSE routes)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.url.path.endswith(("/stream", "/watch")):
        token, scheme = request.query_params.get("access_token", ""), "bearer"
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError.unauthorized("missing bearer token")
    user = await _state(request).store.authenticate_token(token.strip())
    if user is None:
        raise ApiError.unauthorized("unknown or revoked token")
    return Principal(user.id, user.username, user.is_admin)


User = Annotated[Principal, Depends(current_user)]


def sse_response(subscription: Subscription, keepalive: float = SSE_KEEPALIVE) -> Response:
    """Stream a subscription as Server-Sent Events (spec §5.3 framing)."""

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: %d\n\n" % SSE_RETRY_MS
        async for chunk in subscription.frames(keepalive=keepalive):
            yield chunk or b": keep-alive\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def create_app(state: AppState) -> FastAPI:
    app = FastAPI(
        title="chatd",
        version=__version__,
        description="Durable LLM agent chats over HTTP and Server-Sent Events.",
    )
    app.state.chatd = state
    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        """The replica takes traffic: not draining, and the database answers."""
        ready = not state.draining and (state.ready_check is None or await state.ready_check())
        if not ready:
            raise ApiError(
                503,
                "unavailable",
                "The server is not ready; retry in a moment.",
                "draining" if state.draining else "database unreachable",
                headers={"Retry-After": "1"},
            )
        return Response(
            encode({"status": "ready", **state.identity}), media_type="application/json"
        )

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: the loop's coderd_chatd_* families, HTTP and process."""
        token = state.metrics_token or os.environ.get("CHATD_METRICS_TOKEN")
        if token and request.headers.get("authorization", "") != f"Bearer {token}":
            raise ApiError.unauthorized("this deployment protects /metrics with a token")
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/users/me", tags=["users"])
    async def me(user: User) -> dict[str, object]:
        """Who the token belongs to."""
        return {"id": user.user_id, "username": user.username, "is_admin": user.is_admin}

    from chatd.api.admin import router as admin_router
    from chatd.api.chats import router as chats_router
    from chatd.api.mcp_servers import router as mcp_servers_router

    # Admin collections first: their paths would otherwise match /api/chats/{chat_id}.
    app.include_router(admin_router)
    app.include_router(mcp_servers_router)
    app.include_router(chats_router)

    @app.get("/", include_in_schema=False)
    async def web_ui() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    app.add_middleware(RequestMiddleware, metrics=HttpMetrics(state.registry))
    return app
