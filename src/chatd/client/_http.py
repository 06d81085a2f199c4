"""The HTTP API and the SSE stream as the terminal client uses them.

A thin async wrapper over httpx: JSON in and out, the documented error shape
turned into `ApiError`, and `events()` yielding `(type, data)` from a chat's
stream, reconnecting with `Last-Event-ID` after a drop. It must not render
anything or keep chat state (that is `_state.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

__all__ = ["ApiClient", "ApiError"]

# 2 s between reconnect attempts, the server's own `retry:` hint (spec §5.3).
RECONNECT_DELAY = 2.0


class ApiError(Exception):
    """A 4xx/5xx answer: its kind and one-sentence message (spec §6.1)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class ApiClient:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=None),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            if body is None:
                response = await self.http.request(method, path)
            else:
                response = await self.http.request(method, path, json=body)
        except httpx.TransportError as err:
            raise ApiError(0, "network", f"Cannot reach {self.url}: {err}.") from None
        return _answer(response)

    async def upload(self, path: str) -> Any:
        """Upload a local file (POST /api/chats/files, streamed from disk); its metadata."""
        try:
            file = await asyncio.to_thread(_open, path)
            with file:
                response = await self.http.post(
                    "/api/chats/files", files={"file": (Path(file.name).name, file)}
                )
        except OSError as err:
            raise ApiError(0, "file", f"Cannot read {path}: {err.strerror or err}.") from None
        except httpx.TransportError as err:
            raise ApiError(0, "network", f"Cannot reach {self.url}: {err}.") from None
        return _answer(response)

    async def events(
        self, chat_id: str, last_seq: Callable[[], int]
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The chat's stream events, forever; resumes after `last_seq()` on every reconnect.

        Yields `("connection", {"state": "reconnecting"})` when the stream drops.
        """
        path = f"/api/chats/{chat_id}/stream"
        while True:
            headers = {"Last-Event-ID": str(last_seq())}
            # A dropped or refused stream is not an error here: reconnect below.
            with contextlib.suppress(httpx.TransportError, httpx.StreamError):
                async with self.http.stream("GET", path, headers=headers) as response:
                    if response.status_code == 404:
                        yield "chat_deleted", {}
                        return
                    if response.status_code != 200:
                        raise httpx.TransportError(f"stream answered {response.status_code}")
                    yield "connection", {"state": "open"}
                    name = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            name = line[6:].strip()
                        elif line.startswith("data:"):
                            data = json.loads(line[5:])
                            yield name or "message", data
                        elif not line:
                            name = ""
            yield "connection", {"state": "reconnecting"}
            await asyncio.sleep(RECONNECT_DELAY)


def _open(path: str) -> BinaryIO:
    return Path(path).expanduser().open("rb")


def _answer(response: httpx.Response) -> Any:
    """The JSON body of a success, `ApiError` from the documented error shape otherwise."""
    if response.status_code == 204:
        return None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        raise ApiError(
            response.status_code,
            str(error.get("kind", "http_error")),
            str(error.get("message", f"The server answered {response.status_code}.")),
        )
    return data
