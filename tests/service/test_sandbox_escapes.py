"""The escape suite: a non-admin user of a real `chatd serve` tries to leave the sandbox.

Every attempt goes through the public HTTP API: the user creates a chat whose message
is the scripted model's `/call TOOL {args}` directive, so the server runs exactly that
built-in tool (granted by an admin) in the chat's bubblewrap sandbox, and the test
reads the committed tool result. Each attempt must be contained — an error result or a
harmless failure inside the sandbox — while the server keeps answering `/healthz` and
nothing outside the workspace changes. Nothing here sends traffic off loopback: the
network test proves there is no route instead of trying one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatd.store import Store
from tests.service.serving import chatd_serve

# The server's environment carries provider keys, as the README tells admins to do.
LEAKED = "sk-escape-suite-must-never-leak"
DISK_LIMIT_MB = 40


@dataclass
class Server:
    url: str
    data_dir: Path
    workspaces: Path
    pid: int
    user_token: str
    victim_token: str
    admin_token: str
    health_failures: list[str] = field(default_factory=list)
    health_latency: float = 0.0


async def _seed(data_dir: Path) -> tuple[str, str]:
    store = await Store.open(f"sqlite+aiosqlite:///{data_dir}/chatd.db", data_dir=data_dir)
    try:
        # Options of its own: a bare scripted default is slowed down for demos at start.
        options = {"delta_delay": 0.0}
        await store.create_model_config(
            "fast", "scripted", "fast", options=options, is_default=True
        )
        tokens = []
        for name in ("mallory", "victim"):
            user = await store.create_user(name)
            token, _ = await store.create_api_token(user.id)
            tokens.append(token)
        return tokens[0], tokens[1]
    finally:
        await store.close()


def _watch_health(server: Server, stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as client:
        while not stop.wait(0.25):
            try:
                started = time.monotonic()
                status = client.get(f"{server.url}/healthz").status_code
                server.health_latency = max(server.health_latency, time.monotonic() - started)
            except httpx.HTTPError as err:
                server.health_failures.append(f"{time.time():.1f}: {err!r}")
                continue
            if status != 200:
                server.health_failures.append(f"{time.time():.1f}: HTTP {status}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("escape")
    for directory in (base, *base.parents):  # the sandbox user passes through (never lists)
        os.chmod(directory, os.stat(directory).st_mode | 0o001)
    data_dir = base / "data"
    data_dir.mkdir()
    user_token, victim_token = asyncio.run(_seed(data_dir))
    env = {
        "CHATD_SANDBOX_DISK_MB": str(DISK_LIMIT_MB),
        # Admission sheds load by event-loop lag; here every turn must run.
        "CHATD_ACQUIRE_MAX_LAG": "0",
        "CHATD_ACQUIRE_MAX_BUSY": "0",
        "CHATD_GENERATE_TITLES": "false",
        "OPENAI_API_KEY": LEAKED,
        "ANTHROPIC_API_KEY": LEAKED,
    }
    with chatd_serve(data_dir, env=env) as served:
        admin_token = (data_dir / "admin.token").read_text().strip()
        live = Server(
            url=served.url,
            data_dir=data_dir,
            workspaces=data_dir / "workspaces",
            pid=served.process.pid,
            user_token=user_token,
            victim_token=victim_token,
            admin_token=admin_token,
        )
        _grant_all(live, "mallory")
        _grant_all(live, "victim")
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_health, args=(live, stop), daemon=True)
        watcher.start()
        yield live
        stop.set()
        watcher.join()


def _grant_all(server: Server, username: str) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers) as admin:
        users = admin.get("/api/users").json()["users"]
        user = next(u for u in users if u["username"] == username)
        response = admin.patch(f"/api/users/{user['id']}", json={"tool_policy": "all"})
        assert response.status_code == 200, response.text


@dataclass
class ToolRun:
    chat_id: str
    is_error: bool
    text: str


async def run_tool(server: Server, tool: str, args: dict[str, Any], *, token: str = "") -> ToolRun:
    """One turn of a new chat whose message is `/call tool args`; the committed result."""
    headers = {"Authorization": f"Bearer {token or server.user_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        created = await client.post(
            "/api/chats",
            json={"message": f"/call {tool} {json.dumps(args)}", "tools": {"builtin": "all"}},
        )
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        async with asyncio.timeout(60):
            while True:
                chat = (await client.get(f"/api/chats/{chat_id}")).json()
                if chat["status"] in ("waiting", "error"):
                    break
                await asyncio.sleep(0.05)
        messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
    results = _results(messages)
    assert results, f"no tool result in {messages}"
    output = results[0]
    return ToolRun(chat_id, output["type"] == "error", output.get("text") or output["error"])


def _results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outputs of every tool result in `messages`, in order."""
    return [p["result"] for m in messages for p in m["parts"] if p.get("type") == "tool_result"]


async def execute(server: Server, command: str, **extra: Any) -> ToolRun:
    return await run_tool(server, "execute", {"command": command, **extra})


def output_of(run: ToolRun) -> str:
    body = json.loads(run.text)
    return str(body.get("output", "")) + str(body.get("error", ""))


def _outside_state(server: Server) -> dict[str, str]:
    """A digest of every file in the data dir but the database and the workspaces."""
    state = {}
    for path in sorted(server.data_dir.rglob("*")):
        relative = path.relative_to(server.data_dir)
        if relative.parts[0] == "workspaces" or relative.name.startswith("chatd.db"):
            continue
        if path.is_file():
            state[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def _sandbox_processes(workspace: Path) -> list[int]:
    """Host pids of live processes whose HOME is `workspace` (its sandbox's commands)."""
    marker = f"HOME={workspace}".encode()
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{entry.path}/environ", "rb") as file:
                    if marker not in file.read().split(b"\0"):
                        continue
                with open(f"{entry.path}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue
            if stat[stat.rfind(b")") + 2 :].split()[0] != b"Z":
                found.append(int(entry.name))
    return found


def _existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.exists(path)]


async def _until(done: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if done():
                return
            await asyncio.sleep(0.1)


# --- reading what is not the chat's ----------------------------------------------------


async def test_etc_shadow_is_unreadable(server: Server) -> None:
    run = await execute(server, "cat /etc/shadow")
    assert "Permission denied" in output_of(run)
    assert "root:" not in output_of(run)
    refused = await run_tool(server, "read_file", {"path": "/etc/shadow"})
    assert refused.is_error and "outside the workspace" in refused.text


@pytest.mark.parametrize("name", ["admin.token", "secret.key", "chatd.db"])
async def test_the_data_dir_does_not_exist_in_the_sandbox(server: Server, name: str) -> None:
    secret = (server.data_dir / name).read_bytes()[:32]
    run = await execute(server, f"cat {server.data_dir / name}; ls -a {server.data_dir}")
    text = output_of(run)
    assert "No such file or directory" in text
    assert secret.decode("latin-1") not in text
    assert name not in text.replace(str(server.data_dir / name), "")
    for path in (str(server.data_dir / name), f"../../{name}", f"../{name}"):
        refused = await run_tool(server, "read_file", {"path": path})
        assert refused.is_error and "outside the workspace" in refused.text
        refused = await run_tool(server, "attach_file", {"path": path})
        assert refused.is_error and "outside the workspace" in refused.text


async def test_another_users_workspace_is_invisible(server: Server) -> None:
    written = await run_tool(
        server,
        "write_file",
        {"path": "diary.txt", "content": "the victim's secret"},
        token=server.victim_token,
    )
    assert not written.is_error, written.text
    victim_dir = server.workspaces / written.chat_id
    assert (victim_dir / "diary.txt").read_text() == "the victim's secret"
    run = await execute(server, f"ls -a {server.workspaces}; cat {victim_dir}/diary.txt")
    text = output_of(run)
    assert "the victim's secret" not in text
    assert written.chat_id not in text.replace(str(victim_dir), "")
    for path in (str(victim_dir / "diary.txt"), f"../{written.chat_id}/diary.txt"):
        refused = await run_tool(server, "read_file", {"path": path})
        assert refused.is_error and "outside the workspace" in refused.text


async def test_the_servers_process_and_environment_are_invisible(server: Server) -> None:
    run = await execute(server, f"ls /proc; cat /proc/{server.pid}/environ; cat /proc/1/environ")
    text = output_of(run)
    pids = {int(word) for word in text.split() if word.isdigit()}
    assert server.pid not in pids
    assert max(pids) < 50  # a PID namespace of its own: only the sandbox's few processes
    assert LEAKED not in text
    env = output_of(await execute(server, "env"))
    assert (
        LEAKED not in env
        and "OPENAI_API_KEY" not in env
        and "CHATD_" not in env.replace("CHATD_CHAT_ID", "")
    )


async def test_process_output_reads_nothing_more(server: Server) -> None:
    started = await execute(
        server,
        f"cat /etc/shadow {server.data_dir}/admin.token; env",
        run_in_background=True,
    )
    process_id = json.loads(started.text)["background_process_id"]
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.user_token}"}
    ) as client:
        # The same chat: its workspace holds the background process.
        await client.post(
            f"/api/chats/{started.chat_id}/messages",
            json={"message": f'/call process_output {{"process_id": "{process_id}"}}'},
        )
        async with asyncio.timeout(30):
            while True:
                chat = (await client.get(f"/api/chats/{started.chat_id}")).json()
                messages = (await client.get(f"/api/chats/{started.chat_id}/messages")).json()
                results = _results(messages["messages"])
                if chat["status"] in ("waiting", "error") and len(results) == 2:
                    break
                await asyncio.sleep(0.05)
    text = json.loads(results[1]["text"])["output"]
    assert "Permission denied" in text and "No such file or directory" in text
    assert LEAKED not in text and (server.data_dir / "admin.token").read_text().strip() not in text


# --- writing outside the workspace ---------------------------------------------------


async def test_writes_outside_the_workspace_fail(server: Server) -> None:
    before = _outside_state(server)
    marker = f"escape-{uuid.uuid4().hex}"
    targets = ["/etc", "/usr", "/opt", str(server.data_dir), str(server.workspaces), "/tmp"]
    command = "; ".join(f"echo x > {t}/{marker}" for t in targets)
    run = await execute(server, command + f"; ls /tmp/{marker}")
    assert "Read-only file system" in output_of(run) or "No such file" in output_of(run)
    # /tmp inside is the sandbox's own; the host's stays untouched.
    assert not _existing([os.path.join(t, marker) for t in targets])
    for path in (f"/etc/{marker}", f"../{marker}", f"../../{marker}", f"{server.data_dir}/x"):
        refused = await run_tool(server, "write_file", {"path": path, "content": "x"})
        assert refused.is_error and "outside the workspace" in refused.text
    assert _outside_state(server) == before


async def test_symlinks_and_hard_links_lead_nowhere(server: Server) -> None:
    before = _outside_state(server)
    token_file = server.data_dir / "admin.token"
    run = await execute(
        server,
        f"ln -s {server.data_dir} data; ln -s {token_file} token; ln -s /etc/passwd passwd; "
        f"ln /etc/passwd hard; ln {token_file} hard2; ls -l",
    )
    # The links exist in the sandbox's workspace, so the server's file tools see them.
    workspace = server.workspaces / run.chat_id
    assert (workspace / "data").is_symlink()
    assert not (workspace / "hard").exists() and not (workspace / "hard2").exists()
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.user_token}"}, timeout=30
    ) as client:
        for call in (
            ("write_file", {"path": "data/escape", "content": "x"}),
            ("write_file", {"path": "token", "content": "overwritten"}),
            ("read_file", {"path": "token"}),
            ("read_file", {"path": "data/secret.key"}),
            ("edit_files", {"edits": [{"path": "passwd", "old_text": "root", "new_text": "x"}]}),
            ("attach_file", {"path": "data/chatd.db"}),
        ):
            result = await _call_in(client, run.chat_id, *call)
            assert result["type"] == "error", result
            assert "outside the workspace" in result["error"]
    assert _outside_state(server) == before
    assert token_file.read_text().strip() == server.admin_token


async def test_a_symlink_swapped_in_while_file_tools_run_changes_nothing_outside(
    server: Server,
) -> None:
    before = _outside_state(server)
    target = server.data_dir
    swapper = (
        f"while true; do rm -rf d; mkdir d; rm -rf d; ln -s {target} d; done"  # as fast as it can
    )
    started = await execute(server, swapper, run_in_background=True)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.user_token}"}, timeout=30
    ) as client:
        outcomes = set()
        for n in range(25):
            result = await _call_in(
                client, started.chat_id, "write_file", {"path": f"d/escape-{n}", "content": "x"}
            )
            outcomes.add(result["type"])
        process_id = json.loads(started.text)["background_process_id"]
        stopped = await _call_in(
            client, started.chat_id, "process_signal", {"process_id": process_id, "signal": "kill"}
        )
        assert stopped["type"] == "text", stopped
    assert not list(target.glob("escape-*"))
    assert _outside_state(server) == before
    assert outcomes <= {"text", "error"}


async def _call_in(
    client: httpx.AsyncClient, chat_id: str, tool: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Run `/call tool args` as the next turn of `chat_id`; that turn's tool result."""
    before = await client.get(f"/api/chats/{chat_id}/messages")
    seen = len(_results(before.json()["messages"]))
    response = await client.post(
        f"/api/chats/{chat_id}/messages", json={"message": f"/call {tool} {json.dumps(args)}"}
    )
    assert response.status_code in (200, 201, 202), response.text
    async with asyncio.timeout(30):
        while True:
            chat = (await client.get(f"/api/chats/{chat_id}")).json()
            messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
            results = _results(messages)
            if chat["status"] in ("waiting", "error") and len(results) > seen:
                output: dict[str, Any] = results[seen]
                return output
            await asyncio.sleep(0.05)


# --- the network ----------------------------------------------------------------------


async def test_the_chatd_api_and_other_ports_are_unreachable(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    probe = (
        "import socket\n"
        "for port in (" + port + ", 22, 5432, 80):\n"
        "    s = socket.socket()\n"
        "    s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(('127.0.0.1', port)); print('CONNECTED', port)\n"
        "    except OSError as err:\n"
        "        print('refused', port, err.errno)\n"
    )
    run = await execute(server, f'python3 -c "{probe}"; cat /proc/net/route /proc/net/dev')
    text = output_of(run)
    assert "CONNECTED" not in text
    assert text.count("refused") == 4
    # No route at all: the only interface is the sandbox's own loopback.
    route_lines = [line for line in text.splitlines() if line.startswith(("Iface", "eth", "en"))]
    assert route_lines == [
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
    ] or all(not line.startswith(("eth", "en")) for line in route_lines)
    interfaces = {
        line.split(":")[0].strip() for line in text.splitlines() if ":" in line and "|" not in line
    }
    assert interfaces & {"lo"} and not interfaces & {"eth0", "ens3", "ens4", "enp0s3"}


# --- exhausting resources --------------------------------------------------------------


async def test_a_fork_bomb_is_contained(server: Server) -> None:
    failures = len(server.health_failures)
    # The shell stays 3 s while the bomb multiplies; the sandbox ends with the shell.
    run = await execute(server, "bomb() { bomb | bomb & }; bomb; sleep 3", timeout="10s")
    text = output_of(run)
    assert "Cannot fork" in text or "Resource temporarily unavailable" in text, text[:500]
    workspace = server.workspaces / run.chat_id
    await _until(lambda: not _sandbox_processes(workspace))
    assert len(server.health_failures) == failures, server.health_failures


async def test_a_4_gib_allocation_fails_inside(server: Server) -> None:
    run = await execute(server, "python3 -c 'x = bytearray(4 << 30); print(len(x))'")
    assert "MemoryError" in output_of(run)
    assert str(4 << 30) not in output_of(run)


async def test_filling_the_disk_past_the_limit_stops_the_commands(server: Server) -> None:
    limit = DISK_LIMIT_MB * 1024 * 1024
    one_file = await execute(server, f"head -c {2 * limit} /dev/zero > big; ls -l big")
    assert "File size limit exceeded" in output_of(one_file) or one_file.is_error
    workspace = server.workspaces / one_file.chat_id
    assert (workspace / "big").stat().st_size <= limit
    many = await execute(
        server,
        "i=0; while true; do i=$((i+1)); head -c 8000000 /dev/zero > f$i; done",
        timeout="60s",
    )
    assert many.is_error
    assert "disk limit" in json.loads(many.text)["error"]
    used = sum(p.stat().st_size for p in (server.workspaces / many.chat_id).iterdir())
    print(f"disk limit {limit} bytes: the writer was stopped at {used} bytes")
    # Stopped within a poll or two of the limit, never anywhere near the 60 s it asked for.
    assert used < limit + 256 * 1024 * 1024
    assert json.loads(many.text)["wall_duration_ms"] < 30_000


async def test_a_background_process_dies_with_its_chat(server: Server) -> None:
    run = await execute(server, "sleep 300", run_in_background=True)
    workspace = server.workspaces / run.chat_id
    await _until(lambda: bool(_sandbox_processes(workspace)))  # started, if still exec'ing
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.user_token}"}
    ) as client:
        assert (await client.delete(f"/api/chats/{run.chat_id}")).status_code == 204
    await _until(lambda: not _sandbox_processes(workspace) and not workspace.exists())


def test_the_server_answered_healthz_throughout(server: Server) -> None:
    # Runs last in this module (pytest keeps file order): every probe so far was a 200.
    assert server.health_failures == []
    print(f"slowest /healthz answer: {server.health_latency * 1000:.0f} ms")
