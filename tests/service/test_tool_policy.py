"""Built-in tool policy over real HTTP: the deployment default, admins' per-user grants,
the 422s at chat creation, and the worker dropping tools revoked after creation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.service.conftest import LiveReplica, running_replica

FILE_TOOLS = ["attach_file", "edit_files", "read_file", "write_file"]
ALL_TOOLS = sorted([*FILE_TOOLS, "execute", "process_list", "process_output", "process_signal"])


async def create(client: httpx.AsyncClient, builtin: Any) -> httpx.Response:
    return await client.post(
        "/api/chats", json={"message": "use your tools", "tools": {"builtin": builtin}}
    )


async def chat_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/api/chats", params={"archived": "all"})).json()["chats"])


async def user_id(client: httpx.AsyncClient) -> str:
    me: str = (await client.get("/api/users/me")).json()["id"]
    return me


async def wait_turn(client: httpx.AsyncClient, chat_id: str, messages: int) -> list[dict[str, Any]]:
    """The chat's messages once it is waiting with at least `messages` of them."""
    async with asyncio.timeout(20):
        while True:
            chat = (await client.get(f"/api/chats/{chat_id}")).json()
            if chat["status"] == "waiting":
                listed: list[dict[str, Any]] = (
                    await client.get(f"/api/chats/{chat_id}/messages")
                ).json()["messages"]
                if len(listed) >= messages:
                    return listed
            await asyncio.sleep(0.05)


def tool_calls(message: dict[str, Any]) -> list[str]:
    return [p["tool_name"] for p in message["parts"] if p["type"] == "tool_call"]


async def test_the_default_policy_refuses_execute_and_creates_nothing(live: LiveReplica) -> None:
    async with live.client(await live.token("nia")) as client:
        refused = await create(client, ["read_file", "execute"])
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["kind"] == "tool_not_allowed"
        assert "execute" in error["message"] and "read_file" not in error["message"]
        assert "chatd users tools nia all" in error["message"]
        assert await chat_count(client) == 0

        assert (await create(client, ["read_file"])).status_code == 201

        every = await create(client, "all")
        assert every.status_code == 422
        assert "process_signal" in every.json()["error"]["message"]
        assert await chat_count(client) == 1


async def test_an_admin_grant_makes_the_same_request_succeed(live: LiveReplica) -> None:
    admin = live.client(await live.token("root", admin=True))
    user = live.client(await live.token("oli"))
    async with admin, user:
        assert (await create(user, ["execute"])).status_code == 422
        granted = await admin.patch(
            f"/api/users/{await user_id(user)}", json={"tool_policy": "all"}
        )
        assert granted.status_code == 200, granted.text
        assert granted.json()["tool_policy"] == "all"
        assert granted.json()["builtin_tools"] == ALL_TOOLS
        assert (await create(user, ["execute"])).status_code == 201
        assert (await create(user, "all")).status_code == 201

        restricted = await admin.patch(
            f"/api/users/{await user_id(user)}", json={"tool_policy": "none"}
        )
        assert restricted.json()["builtin_tools"] == []
        refused = await create(user, ["read_file"])
        assert refused.status_code == 422 and "read_file" in refused.json()["error"]["message"]

        default = await admin.patch(f"/api/users/{await user_id(user)}", json={"tool_policy": None})
        assert default.json()["tool_policy"] is None
        assert default.json()["builtin_tools"] == FILE_TOOLS


async def test_users_me_shows_the_effective_tools_and_admins_get_all(live: LiveReplica) -> None:
    admin = live.client(await live.token("ada", admin=True))
    user = live.client(await live.token("pim"))
    async with admin, user:
        me = (await user.get("/api/users/me")).json()
        assert me == {
            "id": me["id"],
            "username": "pim",
            "is_admin": False,
            "tool_policy": None,
            "builtin_tools": FILE_TOOLS,
        }
        admin_me = (await admin.get("/api/users/me")).json()
        assert admin_me["is_admin"] and admin_me["builtin_tools"] == ALL_TOOLS
        assert (await create(admin, "all")).status_code == 201

        listed = (await admin.get("/api/users")).json()["users"]
        assert [(u["username"], u["builtin_tools"]) for u in listed] == [
            ("ada", ALL_TOOLS),
            ("pim", FILE_TOOLS),
        ]


async def test_a_deployment_default_of_none_refuses_read_file(tmp_path: Path) -> None:
    async with (
        running_replica(tmp_path, builtin_tools="none") as live,
        live.client(await live.token("quin")) as client,
    ):
        assert (await client.get("/api/users/me")).json()["builtin_tools"] == []
        refused = await create(client, ["read_file"])
        assert refused.status_code == 422
        assert refused.json()["error"]["kind"] == "tool_not_allowed"
        assert (await client.post("/api/chats", json={"message": "hi"})).status_code == 201


async def test_user_routes_refuse_non_admins_unknown_users_and_bad_bodies(
    live: LiveReplica,
) -> None:
    admin = live.client(await live.token("boss", admin=True))
    user = live.client(await live.token("rex"))
    async with admin, user:
        rex = await user_id(user)
        for response in (
            await user.get("/api/users"),
            await user.patch(f"/api/users/{rex}", json={"tool_policy": "all"}),
        ):
            assert response.status_code == 403
            assert response.json()["error"]["kind"] == "forbidden"
        assert (await user.get("/api/users/me")).json()["tool_policy"] is None

        missing = await admin.patch("/api/users/no-such-user", json={"tool_policy": "all"})
        assert missing.status_code == 404
        assert missing.json()["error"]["kind"] == "not_found"

        for body in (
            {"tool_policy": "root"},
            {"tool_policy": "all", "is_admin": True},
            {},
        ):
            bad = await admin.patch(f"/api/users/{rex}", json=body)
            assert bad.status_code == 422, body
            assert set(bad.json()["error"]) >= {"kind", "message", "detail"}
            assert bad.json()["error"]["kind"] == "invalid_request"
        assert (await user.get("/api/users/me")).json()["tool_policy"] is None


async def test_the_worker_drops_a_tool_revoked_after_the_chat_was_created(
    live: LiveReplica,
) -> None:
    admin = live.client(await live.token("chief", admin=True))
    user = live.client(await live.token("sam"))
    async with admin, user:
        sam = await user_id(user)
        await admin.patch(f"/api/users/{sam}", json={"tool_policy": "files"})
        created = await create(user, ["read_file"])
        assert created.status_code == 201, created.text
        chat_id = created.json()["id"]
        first = await wait_turn(user, chat_id, 2)
        # The scripted model calls an offered tool once per turn.
        assert "read_file" in [name for m in first for name in tool_calls(m)]

        await admin.patch(f"/api/users/{sam}", json={"tool_policy": "none"})
        sent = await user.post(f"/api/chats/{chat_id}/messages", json={"message": "again"})
        assert sent.status_code == 200, sent.text
        messages = await wait_turn(user, chat_id, len(first) + 2)
        second_turn = messages[len(first) :]
        assert [m["role"] for m in second_turn] == ["user", "assistant"]
        assert tool_calls(second_turn[-1]) == [], "read_file is no longer offered"


async def test_an_unusable_sandbox_refuses_the_command_tools(live: LiveReplica) -> None:
    live.replica.state.sandbox_error = "bubblewrap cannot create a user namespace here"
    async with live.client(await live.token("tess", admin=True)) as client:
        refused = await create(client, ["read_file", "process_list"])
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["kind"] == "sandbox_unavailable"
        assert error["message"] == "bubblewrap cannot create a user namespace here"
        assert "process_list" in error["detail"]
        assert (await create(client, "all")).status_code == 422
        assert await chat_count(client) == 0
        assert (await create(client, ["read_file", "write_file"])).status_code == 201
