"""Following a response's turn: feeding its chat's events to a `ResponseBuilder`, to
completion (a waiting create, a cancel), as far as the log goes (a retrieve), or as
Server-Sent Events in whatever shape the route wants (Responses or chat completions).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable

from fastapi.responses import Response

from chatd.api.errors import ApiError
from chatd.api.openai._events import Event, ResponseBuilder, parse_frames
from chatd.api.resources import follow_stream
from chatd.api.sse import SseResponse
from chatd.api.state import AppState
from chatd.types import encode

__all__ = ["EXPIRED", "follow", "sse", "sse_frame"]

#: Why a response whose turn's events were pruned from the log cannot be rebuilt.
EXPIRED = "This response's events are no longer retained (CHATD_STREAM_RETAIN_EVENTS)."


def sse_frame(event: dict[str, object], name: str | None = None) -> bytes:
    head = b"event: %s\n" % name.encode() if name else b""
    return head + b"data: " + encode(event) + b"\n\n"


async def follow(
    state: AppState, builder: ResponseBuilder, chat_id: str, *, live: bool = True
) -> None:
    """Feed `builder` the turn's events until the response ends; with `live=False`
    only what has happened so far. Raises 404 when the events were pruned."""
    subscription = await follow_stream(state, chat_id, builder.after_seq)
    frames = subscription.frames() if live else subscription.backlog()
    try:
        async for chunk in frames:
            for data in parse_frames(chunk):
                builder.feed(data)
            if builder.done:
                break
    finally:
        await frames.aclose()  # type: ignore[attr-defined]
        subscription.close()
    if builder.expired:
        raise ApiError(404, "expired", EXPIRED)


async def sse(
    state: AppState,
    builder: ResponseBuilder,
    chat_id: str,
    render: Callable[[Iterable[Event]], bytes],
) -> Response:
    """The response's events from its start as SSE, each batch through `render`."""
    subscription = await follow_stream(state, chat_id, builder.after_seq)

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            if opening := render(builder.opening()):
                yield opening
            async for chunk in subscription.frames(keepalive=state.sse_keepalive):
                if not chunk:
                    yield b": keep-alive\n\n"
                    continue
                events = [event for data in parse_frames(chunk) for event in builder.feed(data)]
                if rendered := render(events):
                    yield rendered
                if builder.done:
                    break
            if builder.expired:
                error = {"message": EXPIRED, "type": "invalid_request_error", "code": "expired"}
                yield sse_frame({"type": "error", "sequence_number": 2, **error, "error": error})
        finally:
            subscription.close()

    return SseResponse(body(), write_deadline=state.sse_write_deadline)
