"""Server-Sent Events: the response that streams a chat's frames, and its framing.

`SseResponse` writes complete frames (encoded once by the hub, shared by every
subscriber) straight to the server's connection, and drops a client that stops
reading (spec §5.3, §5.5). It knows nothing of routes, auth or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from chatd.stream.hub import Push, Subscription

__all__ = [
    "DIRECT_WRITE_LIMIT",
    "RAW_SEND",
    "SSE_KEEPALIVE",
    "SSE_RETRY_MS",
    "SSE_WRITE_DEADLINE",
    "SseResponse",
    "sse_response",
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
