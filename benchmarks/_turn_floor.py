"""The turn floor: a bare uvicorn app that does per turn what any durable chat server must.

Same stack as `chatd serve` (uvloop, httptools, one process) and the same store pragmas as
chatd's SQLite (`chatd.store._engine`: WAL, synchronous=NORMAL), none of chatd: no model,
no agent loop, no hub, no event log, no ORM, no threads. Per turn:

- `POST /api/chats` `{"message": …}` inserts the user message row and commits, then
  answers `{"id": …}`;
- `GET /api/chats/{id}/stream` streams `--parts` `message_part` text deltas at 20 parts/s
  on a fixed schedule, each stamped with the wall clock when it is written, commits the
  reply row (the deltas' text), then sends the assistant `message` frame and the closing
  `status` frame, in the frame format chatd sends, and ends the response.

So the load test's client drives it exactly as it drives chatd, and what chatd costs per
turn above this is the price of everything it does beyond storing the two messages and
streaming the reply. sqlite3 runs inline on the event loop: the cheapest way to commit.

Run: `python -m benchmarks._turn_floor --port 8091 --db /tmp/floor.db` (the load test
starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
import uuid
from typing import Any

from benchmarks._sse_floor import serve_floor

DELAY = 0.05  # 20 parts/s, as the scripted model in the load test
PARTS = 60

_SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class TurnFloor:
    """The ASGI app, holding one SQLite connection (the event loop is its only user)."""

    def __init__(self, db: str, parts: int) -> None:
        self.parts = parts
        self.db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, chat_id TEXT NOT NULL,"
            " role TEXT NOT NULL, content TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS messages_chat ON messages (chat_id, id)")

    def _insert(self, chat_id: str, role: str, content: str) -> None:
        self.db.execute("BEGIN")
        self.db.execute(
            "INSERT INTO messages (chat_id, role, content, created_at) VALUES (?, ?, ?, ?)",
            (chat_id, role, content, time.time()),
        )
        self.db.execute("COMMIT")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == "/api/chats":
            await self._create(receive, send)
        elif method == "GET" and path.startswith("/api/chats/") and path.endswith("/stream"):
            await self._stream(path.split("/")[3], send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _create(self, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        chat_id = uuid.uuid4().hex
        self._insert(chat_id, "user", json.loads(body)["message"])
        await send({"type": "http.response.start", "status": 201, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body", "body": b'{"id":"%s"}' % chat_id.encode()})

    async def _stream(self, chat_id: str, send: Any) -> None:
        # A watcher that goes away does not stop the turn: the reply is still committed
        # (uvicorn drops the writes to a closed connection).
        await send(_SSE_START)
        loop = asyncio.get_running_loop()
        due = loop.time()
        stamps: list[str] = []
        for seq in range(1, self.parts + 1):
            stamp = f"{time.time():.6f} "
            stamps.append(stamp)
            data = b'{"seq":%d,"type":"message_part","role":"assistant","part":' % seq
            data += b'{"type":"text_delta","delta":"%s"}}' % stamp.encode()
            frame = b"id: %d\nevent: message_part\ndata: %s\n\n" % (seq, data)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            due += DELAY
            await asyncio.sleep(max(0.0, due - loop.time()))
        text = "".join(stamps)
        self._insert(chat_id, "assistant", text)
        seq = self.parts + 1
        message = json.dumps(
            {
                "seq": seq,
                "type": "message",
                "message": {
                    "id": chat_id,
                    "role": "assistant",
                    "parts": [{"type": "text", "text": text}],
                },
            },
            separators=(",", ":"),
        )
        status = f'{{"seq":{seq + 1},"type":"status","status":"waiting"}}'
        closing = (
            f"id: {seq}\nevent: message\ndata: {message}\n\n"
            f"id: {seq + 1}\nevent: status\ndata: {status}\n\n"
        )
        await send({"type": "http.response.body", "body": closing.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file (created)")
    parser.add_argument("--parts", type=int, default=PARTS, help="deltas per turn")
    args = parser.parse_args()
    serve_floor(TurnFloor(args.db, args.parts), args.port)


if __name__ == "__main__":
    main()
