"""schemathesis against a live `chatd serve`: no 5xx, and every error in the documented shape.

Every operation of the OpenAPI document (except the never-ending SSE streams) gets
schema-derived requests, valid and invalid, with a real token, over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from chatd.store import Store
from tests.api.conftest import free_port
from tests.service.test_crash import _env

EXAMPLES_PER_OPERATION = 12
STREAMING = ("/stream", "/watch")
# Admin routes are fuzzed with an admin token (an ordinary one only ever gets 403).
ADMIN = ("/api/chats/model-configs", "/api/chats/provider-keys", "/api/chats/mcp-servers")


async def _prepare(data_dir: Path) -> tuple[str, str]:
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir}/chatd.db", data_dir=data_dir)
    try:
        user = await store.create_user("fuzz")
        token, _ = await store.create_api_token(user.id)
        admin = await store.create_user("fuzz-admin", is_admin=True)
        admin_token, _ = await store.create_api_token(admin.id)
        return token, admin_token
    finally:
        await store.close()


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)],
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_up(url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(requests.ConnectionError):  # not listening yet
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("chatd serve did not come up")


def test_no_5xx_and_documented_errors_under_schema_fuzzing(tmp_path: Path) -> None:
    token, admin_token = asyncio.run(_prepare(tmp_path))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start(tmp_path, port)
    try:
        _wait_up(url)
        document = requests.get(f"{url}/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        failures: list[str] = []
        operations = [r.ok() for r in schema.get_all_operations()]
        checked = 0
        for operation in operations:
            if operation.path.endswith(STREAMING):
                continue

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(operation.as_strategy())
            def run(case: schemathesis.Case) -> None:
                bearer = admin_token if case.operation.path.startswith(ADMIN) else token
                headers = {"Authorization": f"Bearer {bearer}"}
                response = case.call(base_url=url, headers=headers, timeout=15)
                label = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 500:
                    failures.append(label + " " + response.text[:200])
                elif response.status_code >= 400:
                    try:
                        error = response.json()["error"]
                        assert {"kind", "message", "detail"} <= set(error)
                    except (ValueError, KeyError, TypeError, AssertionError):
                        failures.append(label + " undocumented error body " + response.text[:200])

            run()
            checked += 1
        assert checked >= 15, "the fuzz covered too few operations"
        assert failures == [], "\n".join(failures[:20])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
