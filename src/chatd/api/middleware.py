"""ASGI middleware: request ids, body limits, JSON bodies, security headers, access log, metrics.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so SSE responses stream through
untouched and no per-request task is spawned.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from chatd.api.errors import error_response
from chatd.api.schemas import MAX_FILE_BYTES
from chatd.logs import REQUEST_ID

__all__ = ["DEFAULT_BODY_LIMIT", "LARGE_BODY_LIMIT", "HttpMetrics", "RequestMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("chatd.access")

# 1 MiB for ordinary bodies; 8 MiB where messages, files and tool results travel.
DEFAULT_BODY_LIMIT = 1 << 20
LARGE_BODY_LIMIT = 8 << 20
_LARGE_BODY_ROUTES = re.compile(
    r"^/api/chats(/[^/]+/(messages(/[^/]+)?|tool-results))?/?$",
)
# The file upload takes multipart/form-data: one file and its framing (the route
# itself stops reading at the file's limit).
_UPLOAD_BODY_LIMIT = MAX_FILE_BYTES + (64 << 10)
_UPLOAD_ROUTE = re.compile(r"^/api/chats/files/?$")
_ID_SEGMENT = re.compile(r"/[0-9a-fA-F-]{32,36}(?=/|$)")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAME_ANCESTORS = b"frame-ancestors 'none'"
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))


class HttpMetrics:
    """`chatd_http_requests_total` and `chatd_http_request_duration_seconds` by route."""

    def __init__(self, registry: CollectorRegistry, namespace: str = "chatd") -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests served, by method, route and status.",
            ("method", "route", "status"),
            namespace=namespace,
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to the response headers, by method and route.",
            ("method", "route"),
            namespace=namespace,
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )


def route_label(path: str) -> str:
    """The path with ids replaced, so metric labels stay few."""
    return _ID_SEGMENT.sub("/{id}", path) if path.startswith("/api/") else path


class RequestMiddleware:
    """The outermost layer (outside Starlette's ServerErrorMiddleware, see `app.py`), so
    the request id, the access line and the metrics cover every answer, 500s included."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        context = REQUEST_ID.set(request_id)
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        started = time.perf_counter()
        status = 0  # stays 0 when no response was started (the request was cancelled)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = _response_headers(message.get("headers", []), request_id)
                if self.metrics is not None:
                    self.metrics.duration.labels(method, route_label(path)).observe(
                        time.perf_counter() - started
                    )
            await send(message)

        try:
            rejection = _reject_body(method, path, headers)
            if rejection is None and method in _BODY_METHODS and "content-length" not in headers:
                # A chunked body has no declared size: buffer it (up to the limit) so an
                # oversized one is refused before any handler sees it.
                receive, rejection = await _buffer_chunked(receive, _limit(path))
            if rejection is not None:
                await rejection(scope, receive, send_wrapper)
            else:
                # ServerErrorMiddleware, inside, has had errors.py log the exception with
                # its traceback and answer 500; it re-raises only for the server to print
                # the same traceback again.
                with contextlib.suppress(Exception):
                    await self.app(scope, receive, send_wrapper)
        finally:
            if self.metrics is not None:
                self.metrics.requests.labels(method, route_label(path), str(status)).inc()
            log.info(
                "%s %s %d %.1fms",
                method,
                _redact(path, scope.get("query_string", b"")),
                status,
                (time.perf_counter() - started) * 1000,
            )
            REQUEST_ID.reset(context)


def _response_headers(
    headers: Iterable[tuple[bytes, bytes]], request_id: str
) -> list[tuple[bytes, bytes]]:
    """The response's headers, plus the request id and the security headers.

    Every response refuses to be framed (`X-Frame-Options` for old browsers,
    `frame-ancestors` for the rest) or sniffed; a page's own Content-Security-Policy
    (the web UI's, /docs') keeps its directives and gains `frame-ancestors`.
    """
    out: list[tuple[bytes, bytes]] = []
    policy = b""
    for name, value in headers:
        if name.lower() == b"content-security-policy":
            policy = value
        else:
            out.append((name, value))
    if b"frame-ancestors" not in policy:
        policy = b"; ".join(p for p in (policy, _FRAME_ANCESTORS) if p)
    return [
        *out,
        (b"content-security-policy", policy),
        *_SECURITY_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]


def _too_large(limit: int) -> Any:
    return error_response(
        413,
        "payload_too_large",
        "The request body is too large; send less data.",
        f"the limit for this route is {limit} bytes",
    )


def _limit(path: str) -> int:
    if _UPLOAD_ROUTE.match(path):
        return _UPLOAD_BODY_LIMIT
    return LARGE_BODY_LIMIT if _LARGE_BODY_ROUTES.match(path) else DEFAULT_BODY_LIMIT


async def _buffer_chunked(receive: Receive, limit: int) -> tuple[Receive, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return receive, _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay, None


def _reject_body(method: str, path: str, headers: dict[str, str]) -> Any:
    if method not in _BODY_METHODS:
        return None
    limit = _limit(path)
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return _too_large(limit)
    if length == "0" or (length is None and "transfer-encoding" not in headers):
        return None  # no body: routes with optional bodies accept this
    content_type = headers.get("content-type", "")
    if _UPLOAD_ROUTE.match(path):
        return None  # the upload route checks its multipart body itself
    if content_type.split(";")[0].strip().lower() != "application/json":
        return error_response(
            415,
            "unsupported_media_type",
            "Send the body as JSON ('Content-Type: application/json').",
            f"got content type {content_type!r}" if content_type else "no content type",
        )
    return None


def _redact(path: str, query: bytes) -> str:
    if not query:
        return path
    text = re.sub(rb"access_token=[^&]*", b"access_token=REDACTED", query).decode("latin-1")
    return f"{path}?{text}"
