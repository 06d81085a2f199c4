"""SIGKILL of a real `chatd serve` process mid-turn, then a restart on the same database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from chatd.store import Store
from tests.api.conftest import free_port


def _env(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CHATD_DATA_DIR": str(data_dir),
        "CHATD_LEASE_TTL": "3",
        "CHATD_HEARTBEAT_INTERVAL": "0.5",
        "CHATD_ACQUIRE_INTERVAL": "0.2",
        "CHATD_SYNC_INTERVAL": "0.5",
    }


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_up(url: str) -> None:
    async with asyncio.timeout(30), httpx.AsyncClient() as client:
        while True:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _chat(client: httpx.AsyncClient, chat_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/chats/{chat_id}")).json()
    return body


async def test_sigkill_mid_turn_then_restart_resumes_the_turn(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/chatd.db", data_dir=tmp_path)
    user = await store.create_user("kim")
    token, _ = await store.create_api_token(user.id)
    await store.create_model_config("slow", "scripted", "slow", options={"delta_delay": 0.05})
    await store.close()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = _serve(tmp_path, port)
    try:
        await _until_up(url)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            text = " ".join(f"w{i}" for i in range(80))
            chat_id = (
                await client.post("/api/chats", json={"message": text, "model": "slow"})
            ).json()["id"]
            async with asyncio.timeout(20):
                while (await _chat(client, chat_id))["status"] != "running":  # noqa: ASYNC110 - polling another process
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # mid-stream
            first.send_signal(signal.SIGKILL)
            first.wait(10)

        second = _serve(tmp_path, port)
        try:
            await _until_up(url)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
            ) as client:
                # Lease expiry (3 s) + a couple of acquisition ticks, plus the turn itself.
                async with asyncio.timeout(40):
                    while (chat := await _chat(client, chat_id))["status"] != "waiting":
                        assert chat["status"] in ("running", "pending"), chat
                        await asyncio.sleep(0.1)
                messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()
                roles = [m["role"] for m in messages["messages"]]
                assert roles == ["user", "assistant"], roles  # the step exactly once
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
    finally:
        if first.poll() is None:
            first.kill()
