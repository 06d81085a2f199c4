"""The FastAPI application: health, metrics, identity, and the SSE plumbing for chat streams.

`create_app(state)` builds the app around an `AppState` (the hub, the metrics
registry, the token verifier, readiness). It owns HTTP only: every state change
goes through the store, every event through the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import Receive, Scope, Send

from chatd import __version__
from chatd.api.deps import User, current_user
from chatd.api.errors import ApiError, install_error_handlers
from chatd.api.middleware import HttpMetrics, RequestMiddleware
from chatd.loop.metrics import Metrics
from chatd.store import Store
from chatd.stream.hub import Push, StreamHub, Subscription
from chatd.stream.watch import ChatListWatch
from chatd.types import encode

__all__ = [
    "AppState",
    "SseResponse",
    "User",
    "create_app",
    "current_user",
    "sse_response",
    "store_of",
]

# 15 s: proxies and load balancers close streams idle for longer (spec §5.3).
SSE_KEEPALIVE = 15.0
# Where the app keeps the server's own `send` in the scope (see SseResponse).
RAW_SEND = "chatd.raw_send"
# 2 s: how long a browser's EventSource waits before reconnecting.
SSE_RETRY_MS = 2000
# Unsent bytes on a live SSE connection before its watcher is dropped as too slow
# (it resumes with Last-Event-ID): about the hub's 1 MiB ring of one chat.
DIRECT_WRITE_LIMIT = 1 << 20
# 10 s: how long an SSE connection may go without its socket taking a write before
# it is dropped (spec §5.5; upstream's subscriber deadline).
SSE_WRITE_DEADLINE = 10.0
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

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = Metrics(self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.chatd
    return state


def store_of(request: Request) -> Store:
    """The store of the app serving `request`."""
    return _state(request).store


class SseResponse(Response):
    """Server-Sent Events from an async generator of complete frames.

    The response start goes through the middleware like any other (status, request
    id, metrics); the frames go straight to the server's own `send` (stashed in the
    scope by the app), skipping the half-dozen middleware `send` wrappers that would
    otherwise run for every frame. With a `subscription`, once its backlog is out the
    hub's publisher writes each live frame to the connection itself (`_direct_writer`):
    no task wakes up per frame. A client that hangs up ends the stream at once.

    A client that stops reading is dropped (spec §5.5): once its socket has taken no
    write for `write_deadline` seconds, or its connection holds more than
    `DIRECT_WRITE_LIMIT` unsent bytes, the connection is aborted (a last chunk it
    would never read is not waited for) and the client resumes with `Last-Event-ID`.
    """

    media_type = "text/event-stream; charset=utf-8"

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        subscription: Subscription | None = None,
        write_deadline: float = SSE_WRITE_DEADLINE,
    ) -> None:
        self.frames = frames
        self.subscription = subscription
        self.write_deadline = write_deadline
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        write: Send = scope.get(RAW_SEND, send)
        if self.subscription is not None:
            self.subscription.push = _direct_writer(write, self.write_deadline)
        streaming = asyncio.ensure_future(self._stream(write))
        hangup = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((streaming, hangup), return_when=asyncio.FIRST_COMPLETED)
        finally:
            streaming.cancel()
            hangup.cancel()
            await asyncio.gather(streaming, hangup, return_exceptions=True)
        if not streaming.cancelled():
            error = streaming.exception()
            slow = self.subscription is not None and self.subscription.closed_reason == "slow"
            if isinstance(error, TimeoutError) or slow:
                # Its last chunk would never be read either. Returning before the
                # server has seen the connection go would log an incomplete response.
                _abort(write)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await _disconnected(receive)
                return
            if error is not None:
                raise error
            await write({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, write: Send) -> None:
        async with contextlib.aclosing(self.frames) as frames:
            async for chunk in frames:
                # The server's `send` waits while the connection's buffer is full.
                async with asyncio.timeout(self.write_deadline):
                    await write({"type": "http.response.body", "body": chunk, "more_body": True})


def _direct_writer(send: Send, deadline: float = SSE_WRITE_DEADLINE) -> Push | None:
    """Synchronous chunk writes on the connection behind uvicorn's `send`, or None.

    Only uvicorn's httptools protocol (the one `chatd serve` runs) with a chunked
    response qualifies: a chunk is written exactly as its `send` would write it. A
    connection is too slow once it holds more than `DIRECT_WRITE_LIMIT` unsent bytes,
    or its socket has taken none of them for `deadline` seconds (seen at each write).
    """
    cycle: Any = getattr(send, "__self__", None)
    transport: Any = getattr(cycle, "transport", None)
    if (
        cycle is None
        or transport is None
        or getattr(cycle, "chunked_encoding", None) is not True
        or not callable(getattr(transport, "write", None))
        or not callable(getattr(transport, "get_write_buffer_size", None))
    ):
        return None
    left = 0  # bytes still unsent after the last write
    stalled_since = 0.0  # since when the socket has taken none of them, if it has not

    def push(chunk: bytes) -> bool:
        nonlocal left, stalled_since
        if cycle.disconnected or transport.is_closing():
            return False
        if left and transport.get_write_buffer_size() >= left:
            # Nothing went out since the last write: the socket is not taking any.
            now = time.monotonic()
            if not stalled_since:
                stalled_since = now
            elif now - stalled_since >= deadline:
                return False
        else:
            stalled_since = 0.0
        transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        left = transport.get_write_buffer_size()
        return bool(left <= DIRECT_WRITE_LIMIT)

    return push


def _abort(send: Send) -> None:
    """Drop the connection behind uvicorn's `send` without flushing what it holds."""
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and callable(getattr(transport, "abort", None)):
        transport.abort()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue


def sse_response(
    subscription: Subscription,
    keepalive: float = SSE_KEEPALIVE,
    write_deadline: float = SSE_WRITE_DEADLINE,
) -> Response:
    """Stream a subscription as Server-Sent Events (spec §5.3 framing)."""

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"retry: %d\n\n" % SSE_RETRY_MS
        async for chunk in subscription.frames(keepalive=keepalive):
            yield chunk or b": keep-alive\n\n"

    return SseResponse(body(), subscription, write_deadline)


class _App(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send  # the server's own send, for SseResponse
        await super().__call__(scope, receive, send)


def create_app(state: AppState) -> FastAPI:
    app = _App(
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

    from chatd.api.admin import router as admin_router
    from chatd.api.chats import router as chats_router
    from chatd.api.mcp_servers import router as mcp_servers_router
    from chatd.api.users import router as users_router

    # Admin collections first: their paths would otherwise match /api/chats/{chat_id}.
    app.include_router(admin_router)
    app.include_router(mcp_servers_router)
    app.include_router(chats_router)
    app.include_router(users_router)

    @app.get("/", include_in_schema=False)
    async def web_ui() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    app.add_middleware(RequestMiddleware, metrics=HttpMetrics(state.registry))
    return app
