"""The FastAPI application: assembles the routers, health, readiness, metrics, docs, the web UI.

`create_app(state)` builds the app around an `AppState` (the store, the hub, the
metrics registry, readiness). It owns HTTP only: every state change goes through
the store, every event through the hub. It imports the routers; nothing imports it
but `chatd.api` itself.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from chatd import __version__
from chatd.api import admin, chats, files, instructions, mcp_servers, openai, turns, usage, users
from chatd.api.docs import install_docs
from chatd.api.errors import ApiError, install_error_handlers
from chatd.api.middleware import HttpMetrics, RequestMiddleware
from chatd.api.sse import RAW_SEND
from chatd.api.state import AppState
from chatd.types import encode

__all__ = ["create_app"]

# The browser UI: static files shipped in the package (no build step), public (spec §6.2).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# Where index.html's sign-in hint names the admin token file (as CHATD_DATA_DIR/admin.token).
_TOKEN_HINT = '<code id="admin-token-path">{}</code>'


# The web UI's policy (a <meta> cannot carry frame-ancestors, so it is a header); the
# request middleware adds frame-ancestors 'none'.
WEB_UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)


class _App(FastAPI):
    http_metrics: HttpMetrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send  # the server's own send, for SseResponse
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware, so the 500s it answers get their
        # access line, metrics and request id like every other answer.
        return RequestMiddleware(super().build_middleware_stack(), self.http_metrics)


def create_app(state: AppState) -> FastAPI:
    app = _App(
        title="chatd",
        version=__version__,
        description="Durable LLM agent chats over HTTP and Server-Sent Events.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.chatd = state
    app.http_metrics = HttpMetrics(state.registry)
    install_error_handlers(app)
    install_docs(app)

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

    # Admin collections first: their paths would otherwise match /api/chats/{chat_id}.
    app.include_router(admin.router)
    app.include_router(mcp_servers.router)
    app.include_router(instructions.router)
    app.include_router(files.router)
    app.include_router(chats.router)
    app.include_router(turns.router)
    app.include_router(usage.router)  # /api/users/me/usage before /api/users/{user_id}
    app.include_router(users.router)
    app.include_router(openai.router)

    index = _web_index(state.admin_token_path)

    @app.get("/", include_in_schema=False)
    async def web_ui() -> HTMLResponse:
        return HTMLResponse(
            index,
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": WEB_UI_POLICY},
        )

    app.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    return app


def _web_index(admin_token_path: Path | None) -> str:
    """index.html, its sign-in hint naming where this deployment keeps the admin token."""
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    if admin_token_path is None:
        return page
    named = _TOKEN_HINT.format(html.escape(str(admin_token_path)))
    return page.replace(_TOKEN_HINT.format("CHATD_DATA_DIR/admin.token"), named)
