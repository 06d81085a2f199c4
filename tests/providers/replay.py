"""A local HTTP server that replays golden provider responses to the official SDK clients.

Fixtures are files under tests/fixtures/providers/<provider>/NAME.http holding an
HTTP response as it appears on the wire, minus framing: a status line, headers, a
blank line, the body. Event-stream bodies are sent one event per chunk, so the SDK
really streams. A header `x-replay: disconnect` (not sent) drops the connection
after the body without ending the chunked stream, as a provider crashing mid-answer
does; `x-replay: stall` keeps it open, sending nothing more, until the client
hangs up (a provider that went quiet). Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


@dataclass(frozen=True)
class Fixture:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    disconnect: bool = False
    stall: bool = False

    @classmethod
    def load(cls, provider: str, name: str) -> Fixture:
        raw = (FIXTURES / provider / f"{name}.http").read_text(encoding="utf-8")
        head, _, body = raw.partition("\n\n")
        status_line, *header_lines = head.splitlines()
        _, status, reason = status_line.split(" ", 2)
        headers: list[tuple[str, str]] = []
        replay = ""
        for line in header_lines:
            key, _, value = line.partition(":")
            if key.strip().lower() == "x-replay":
                replay = value.strip()
                continue
            headers.append((key.strip(), value.strip()))
        return cls(
            int(status),
            reason,
            headers,
            body.encode("utf-8"),
            disconnect=replay == "disconnect",
            stall=replay == "stall",
        )

    @property
    def is_event_stream(self) -> bool:
        return any(
            k.lower() == "content-type" and v.startswith("text/event-stream")
            for k, v in self.headers
        )

    def chunks(self) -> list[bytes]:
        if not self.is_event_stream:
            return [self.body]
        events = self.body.split(b"\n\n")
        return [event + b"\n\n" for event in events if event.strip()]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ReplayServer:
    """Serves queued fixtures in order, one per request, on 127.0.0.1."""

    queue: list[Fixture] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, provider: str, *names: str) -> None:
        self.queue += [Fixture.load(provider, name) for name in names]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            fixture = self.queue.pop(0) if self.queue else _no_fixture(request)
            await _write_response(writer, fixture)
            if fixture.stall:
                await reader.read()  # until the client hangs up
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client hung up: nothing more to answer
        finally:
            writer.close()


def _no_fixture(request: Request) -> Fixture:
    body = json.dumps({"error": {"message": f"no fixture queued for {request.path}"}})
    return Fixture(599, "No Fixture", [("content-type", "application/json")], body.encode())


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return Request(method, path, headers, body)


async def _write_response(writer: asyncio.StreamWriter, fixture: Fixture) -> None:
    head = [f"HTTP/1.1 {fixture.status} {fixture.reason}"]
    head += [f"{k}: {v}" for k, v in fixture.headers]
    head += ["transfer-encoding: chunked", "connection: close", "", ""]
    writer.write("\r\n".join(head).encode("latin-1"))
    for chunk in fixture.chunks():
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0)
    if fixture.disconnect:
        writer.transport.abort()
        return
    if fixture.stall:
        return

    writer.write(b"0\r\n\r\n")
    await writer.drain()
