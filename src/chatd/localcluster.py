"""A local cluster: a throwaway PostgreSQL and N `chatd serve` processes on loopback.

For the replica chaos tests and the replica benchmark, and for trying several
replicas on one machine. Each replica is a real process on its own port with its
own data directory; all share the database, the secret key and the settings
given (short test timings by default). Replicas can be killed (SIGKILL), stopped
gracefully and started again; PostgreSQL can be stopped and started under them.

    cluster = LocalCluster(Path("/tmp/x"), replicas=3)
    await cluster.start()
    token = await cluster.user_token("kim")
    ...
    await cluster.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import httpx
from cryptography.fernet import Fernet

from chatd.store import Store
from chatd.store.testing import TemporaryPostgres

__all__ = ["TEST_TIMINGS", "LocalCluster"]

# Short timings (spec §0.1's test settings): failover in lease_ttl + acquire_interval.
TEST_TIMINGS = {
    "CHATD_LEASE_TTL": "2",
    "CHATD_HEARTBEAT_INTERVAL": "0.5",
    "CHATD_ACQUIRE_INTERVAL": "0.25",
    "CHATD_SYNC_INTERVAL": "0.5",
    "CHATD_SHUTDOWN_GRACE": "2",
}
DATABASE = "chatd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Process:
    def __init__(self, name: str, port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class LocalCluster:
    def __init__(
        self,
        root: Path,
        replicas: int = 3,
        *,
        settings: dict[str, str] | None = None,
        durable: bool = False,
    ) -> None:
        self.root = root
        self.settings = {**TEST_TIMINGS, **(settings or {})}
        self.postgres = TemporaryPostgres(durable=durable)
        self.database_url = ""
        self.secret_key = Fernet.generate_key().decode()
        self.call_log = root / "scripted-calls.jsonl"
        self.replicas = {
            f"r{i}": _Process(f"r{i}", _free_port(), root / f"r{i}.log")
            for i in range(1, replicas + 1)
        }

    @property
    def names(self) -> list[str]:
        return list(self.replicas)

    def url(self, name: str) -> str:
        return self.replicas[name].url

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """PostgreSQL, a migrated database, then every replica (until each is ready)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        await self.postgres.execute(f'CREATE DATABASE "{DATABASE}"')
        self.database_url = self.postgres.url(DATABASE)
        store = await self.open_store()
        await store.close()
        for name in self.replicas:
            self.spawn(name)
        await asyncio.gather(*(self.wait_ready(name) for name in self.replicas))

    async def open_store(self) -> Store:
        """A store on the cluster's database (migrates it), for setup and checks."""
        return await Store.open(
            self.database_url,
            data_dir=self.root,
            secret_key=self.secret_key.encode(),
        )

    def env(self, name: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.settings,
            "CHATD_DATABASE_URL": self.database_url,
            "CHATD_DATA_DIR": str(self.root / name),
            "CHATD_SECRET_KEY": self.secret_key,
            "CHATD_SCRIPTED_CALL_LOG": str(self.call_log),
        }

    def spawn(self, name: str) -> None:
        """Start replica `name` (it must not be running); returns at once."""
        process = self.replicas[name]
        if process.alive:
            raise RuntimeError(f"replica {name} is already running")
        if process._log_file is not None:
            process._log_file.close()
        process._log_file = process.log.open("ab")
        process.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatd.cli",
                "serve",
                "--port",
                str(process.port),
                "--replica-id",
                name,
            ],
            env=self.env(name),
            stdout=process._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    async def wait_ready(self, name: str, within: float = 60.0) -> None:
        """Until `/readyz` of replica `name` answers 200; fails if the process exits."""
        process = self.replicas[name]
        async with asyncio.timeout(within), httpx.AsyncClient(timeout=2) as client:
            while True:
                if not process.alive:
                    raise RuntimeError(f"replica {name} exited:\n{self.log_tail(name)}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{process.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL replica `name`: no shutdown, leases left to expire."""
        popen = self.replicas[name].popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
            popen.wait(10)

    def terminate(self, name: str, within: float = 20.0) -> int | None:
        """SIGTERM (graceful shutdown); SIGKILL after `within` seconds. The exit status."""
        popen = self.replicas[name].popen
        if popen is None:
            return None
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(within)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(10)
        return popen.returncode

    async def stop(self) -> None:
        """Every replica (gracefully, in parallel), then PostgreSQL."""
        await asyncio.gather(*(asyncio.to_thread(self.terminate, name) for name in self.replicas))
        for process in self.replicas.values():
            if process._log_file is not None:
                process._log_file.close()
        self.postgres.stop()

    # --- helpers for tests --------------------------------------------------------------

    async def user_token(self, username: str) -> str:
        store = await self.open_store()
        try:
            user = await store.create_user(username)
            token, _ = await store.create_api_token(user.id)
            return token
        finally:
            await store.close()

    async def scripted_model(self, name: str, **options: Any) -> None:
        store = await self.open_store()
        try:
            await store.create_model_config(name, "scripted", name, options=options)
        finally:
            await store.close()

    def calls(self) -> list[dict[str, Any]]:
        """The scripted model's call log: one dict per call start and end, in order."""
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines() if line]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.replicas[name].log
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
