"""The streaming floor: a bare uvicorn SSE server, the peer of the service load test.

Same stack as `chatd serve` (uvloop, httptools, one process), none of chatd: no
model, no agent loop, no hub, no database. `GET /api/chats/{id}/stream` streams
`message_part` text deltas at 20 parts/s on a fixed schedule, each stamped with
the wall clock when it is written, in the frame format chatd sends, so the load
test's client measures both servers the same way. What chatd costs per delivered
part above this is the price of its real path (model → loop → hub → persistence).

Run: `python -m benchmarks._sse_floor --port 8090` (the load test starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvicorn

DELAY = 0.05  # 20 parts/s, as the scripted model in the load test

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if not scope["path"].endswith("/stream"):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(_START)
    streaming = asyncio.create_task(_parts(send))
    try:
        while (await receive())["type"] != "http.disconnect":
            continue
    finally:
        streaming.cancel()


async def _parts(send: Any) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    seq = 0
    while True:
        seq += 1
        data = b'{"seq":%d,"type":"message_part","role":"assistant","part":' % seq
        data += b'{"type":"text_delta","delta":"%.6f "}}' % time.time()
        frame = b"id: %d\nevent: message_part\ndata: %s\n\n" % (seq, data)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        due += DELAY
        await asyncio.sleep(max(0.0, due - loop.time()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_floor(app, args.port)


def serve_floor(floor: Any, port: int) -> None:
    """Serve a floor ASGI app as chatd is served: uvloop, httptools, no access log."""
    uvicorn.run(
        floor,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
