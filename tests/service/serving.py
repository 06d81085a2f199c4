"""A real `chatd serve` subprocess for the tests that need the whole program."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.api.conftest import free_port


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def chatd_serve(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    startup: float = 30.0,
) -> Iterator[Served]:
    """`chatd serve` on a free loopback port with `CHATD_DATA_DIR=data_dir` and `env`,
    up (its /healthz answering) before the body runs; stopped with SIGTERM after it.
    Its output goes to `serve.log` beside the data dir: a pipe nobody reads would fill
    and block the server."""
    port = free_port()
    log_path = data_dir.parent / "serve.log"
    environment = {**os.environ, "CHATD_DATA_DIR": str(data_dir), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        served = Served(f"http://127.0.0.1:{port}", process, log_path)
        try:
            deadline = time.monotonic() + startup
            while True:
                with contextlib.suppress(httpx.TransportError):  # not listening yet
                    if httpx.get(f"{served.url}/healthz").status_code == 200:
                        break
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "chatd serve did not start"
                time.sleep(0.1)
            yield served
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
