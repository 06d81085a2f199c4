"""A client that stops reading its stream is dropped, never waited for (spec §5.5)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from tests.service.conftest import running_replica
from tests.service.test_turns import wait_status


async def test_a_client_that_stops_reading_is_disconnected_over_either_http_protocol(
    tmp_path: Path,
) -> None:
    # 1.3 MB/s of deltas for 7.5 s: the stalled client's socket buffers (~3 MB on
    # loopback) fill within ~2.5 s; from then on its socket takes no write, and it is
    # dropped a deadline later, seconds before the turn ends.
    text = " ".join(["x" * 20_000] * 500)
    for http in ("httptools", "h11"):
        async with running_replica(tmp_path / http, http=http, sse_write_deadline=1.0) as live:
            model = await live.scripted_model(
                "firehose", delta_delay=0.015, script=[{"text": text}]
            )
            token = await live.token("stall")
            async with live.client(token) as client:
                chat = (
                    await client.post("/api/chats", json={"message": "go", "model": model})
                ).json()
                loop = asyncio.get_running_loop()
                stalled = socket.socket()
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stalled.setblocking(False)
                await loop.sock_connect(stalled, ("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
                request = (
                    f"GET /api/chats/{chat['id']}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n"
                )
                await loop.sock_sendall(stalled, request.encode())
                started = time.monotonic()
                hub = live.replica.hub
                # ...and it never reads. The server lets go of its watcher while the
                # turn is still streaming, and closes the connection.
                async with asyncio.timeout(20):
                    while hub.watcher_count(chat["id"]) == 0:  # noqa: ASYNC110 - a poll
                        await asyncio.sleep(0.05)
                    while hub.watcher_count(chat["id"]) > 0:  # noqa: ASYNC110 - a poll
                        await asyncio.sleep(0.05)
                dropped_after = time.monotonic() - started
                running = (await client.get(f"/api/chats/{chat['id']}")).json()
                assert running["status"] == "running", (http, dropped_after)
                with stalled:
                    async with asyncio.timeout(10):
                        try:
                            while await loop.sock_recv(stalled, 1 << 20):
                                pass  # what the kernel held, then the end
                        except ConnectionResetError:
                            pass  # or the reset, when the server aborted first
                # The owner was never held up: the whole reply is committed.
                await wait_status(client, chat["id"], "waiting", within=30)
                messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()
                answer = messages["messages"][-1]
                assert answer["role"] == "assistant", http
                assert "".join(p.get("text", "") for p in answer["parts"]) == text, http
