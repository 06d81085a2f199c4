"""Instructions over HTTP: the deployment's, the user's and AGENTS.md, joined before the
chat's own system prompt in the scripted model's recorded call."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from tests.service.conftest import LiveReplica, running_replica
from tests.service.test_cost import waited

AGENTS = "<workspace-context>\nSource: AGENTS.md\n{}\n</workspace-context>"


def system_texts(log: Path, user_text: str) -> list[str]:
    """The system texts of the (one) recorded model call answering `user_text`."""
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    [call] = [c for c in lines if c["phase"] == "start" and c["user"] == user_text]
    texts: list[str] = call["system"]
    return texts


async def turn(client: httpx.AsyncClient, chat_id: str, message: str) -> dict[str, Any]:
    sent = await client.post(f"/api/chats/{chat_id}/messages", json={"message": message})
    assert sent.status_code in (200, 201, 202), sent.text
    return await waited(client, chat_id)


async def test_deployment_user_and_agents_md_come_before_the_chat_prompt_in_order(
    tmp_path: Path,
) -> None:
    log = tmp_path / "calls.jsonl"
    async with running_replica(tmp_path / "data", scripted_call_log=log) as live:
        model = await live.scripted_model("plain", script=[{"text": "ok"}])
        async with (
            live.client(await live.token("root", admin=True)) as admin,
            live.client(await live.token("ann")) as client,
        ):
            put = await admin.put(
                "/api/chats/config/system-prompt", json={"system_prompt": "Deployment rules."}
            )
            assert put.json() == {"system_prompt": "Deployment rules."}
            put = await client.put(
                "/api/chats/config/user-prompt", json={"user_prompt": "User rules."}
            )
            assert put.json() == {"user_prompt": "User rules."}
            chat = (
                await client.post(
                    "/api/chats",
                    json={
                        "model": model,
                        "message": "first",
                        "system_prompt": "Chat rules.",
                        "tools": {"builtin": ["read_file"]},
                    },
                )
            ).json()
            assert chat["instructions"] is None  # no run yet
            done = await waited(client, chat["id"])
            assert done["instructions"] == ["deployment", "user", "chat"]
            assert system_texts(log, "first") == ["Deployment rules.\n\nUser rules.", "Chat rules."]

            workspace = tmp_path / "data" / "workspaces" / chat["id"]
            (workspace / "AGENTS.md").write_text("Agents rules.\n")
            done = await turn(client, chat["id"], "second")
            assert done["instructions"] == ["deployment", "user", "agents_md", "chat"]
            assert system_texts(log, "second") == [
                "Deployment rules.\n\nUser rules.\n\n" + AGENTS.format("Agents rules."),
                "Chat rules.",
            ]

            # A symlink out of the workspace is never followed; one inside it is.
            outside = tmp_path / "secret.md"
            outside.write_text("SECRET")
            (workspace / "AGENTS.md").unlink()
            os.symlink(outside, workspace / "AGENTS.md")
            done = await turn(client, chat["id"], "third")
            assert done["instructions"] == ["deployment", "user", "chat"]
            assert not any("SECRET" in text for text in system_texts(log, "third"))
            (workspace / "AGENTS.md").unlink()
            (workspace / "docs").mkdir()
            (workspace / "docs" / "rules.md").write_text("Linked rules.")
            os.symlink("docs/rules.md", workspace / "AGENTS.md")
            await turn(client, chat["id"], "fourth")
            assert AGENTS.format("Linked rules.") in system_texts(log, "fourth")[0]

            # Cleared instructions apply from the next run on; a chat without
            # built-in tools never reads its workspace.
            await admin.put("/api/chats/config/system-prompt", json={"system_prompt": ""})
            bare = (
                await client.post("/api/chats", json={"model": model, "message": "fifth"})
            ).json()
            (tmp_path / "data" / "workspaces" / bare["id"]).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / "workspaces" / bare["id"] / "AGENTS.md").write_text("unread")
            done = await waited(client, bare["id"])
            assert done["instructions"] == ["user"]
            assert system_texts(log, "fifth") == ["User rules."]


async def test_instruction_routes_are_per_user_admin_only_and_check_their_input(
    live: LiveReplica,
) -> None:
    async with (
        live.client(await live.token("root", admin=True)) as admin,
        live.client(await live.token("ann")) as ann,
        live.client(await live.token("eve")) as eve,
    ):
        assert (await admin.get("/api/chats/config/system-prompt")).json() == {"system_prompt": ""}
        for method, body in (("GET", None), ("PUT", {"system_prompt": "mine now"})):
            refused = await ann.request(method, "/api/chats/config/system-prompt", json=body)
            assert refused.status_code == 403 and refused.json()["error"]["kind"] == "forbidden"
        assert (await admin.get("/api/chats/config/system-prompt")).json() == {"system_prompt": ""}

        await ann.put("/api/chats/config/user-prompt", json={"user_prompt": "Ann's rules."})
        assert (await ann.get("/api/chats/config/user-prompt")).json() == {
            "user_prompt": "Ann's rules."
        }
        assert (await eve.get("/api/chats/config/user-prompt")).json() == {"user_prompt": ""}

        for client, path, body in [
            (ann, "/api/chats/config/user-prompt", {"user_prompt": "x" * 65537}),
            (ann, "/api/chats/config/user-prompt", {"prompt": "x"}),
            (ann, "/api/chats/config/user-prompt", {"user_prompt": None}),
            (admin, "/api/chats/config/system-prompt", {"system_prompt": 3}),
            (admin, "/api/chats/config/system-prompt", {}),
        ]:
            bad = await client.put(path, json=body)
            assert bad.status_code == 422, (body, bad.text)
            assert bad.json()["error"]["kind"] == "invalid_request"
        assert (await ann.get("/api/chats/config/user-prompt")).json() == {
            "user_prompt": "Ann's rules."
        }
        anonymous = await ann.get("/api/chats/config/user-prompt", headers={"Authorization": ""})
        assert anonymous.status_code == 401
