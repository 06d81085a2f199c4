"""Provider tools (web search) over real HTTP: an admin allows them per model config, a
chat enables them, and the run offers them to the model, which executes them itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.test_app_basics import assert_error_shape
from tests.service.conftest import LiveReplica, running_replica
from tests.service.test_turns import wait_status

CONFIGS = "/api/chats/model-configs"
SEARCH = {"provider": ["web_search"]}


def _starts(call_log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in call_log.read_text().splitlines()]
    return [c for c in lines if c["phase"] == "start"]


async def test_a_chat_enables_web_search_its_model_config_allows_and_gets_its_sources(
    tmp_path: Path,
) -> None:
    call_log = tmp_path / "calls.jsonl"
    async with running_replica(tmp_path, scripted_call_log=call_log) as live:
        admin, ann, bob = (
            await live.token("root", admin=True),
            await live.token("ann"),
            await live.token("bob"),
        )
        async with (
            live.client(admin) as root,
            live.client(ann) as client,
            live.client(bob) as other,
        ):
            body = {"name": "searcher", "provider": "scripted", "model": "s"}
            created = await root.post(CONFIGS, json={**body, "provider_tools": ["web_search"]})
            assert created.status_code == 201, created.text
            assert created.json()["provider_tools"] == ["web_search"]
            config_id = created.json()["id"]
            assert (await root.get(f"{CONFIGS}/{config_id}")).json()["provider_tools"] == [
                "web_search"
            ]

            chat = await client.post(
                "/api/chats",
                json={"message": "chatd <release>", "model": "searcher", "tools": SEARCH},
            )
            assert chat.status_code == 201, chat.text
            assert chat.json()["tools"]["provider"] == ["web_search"]
            chat_id = chat.json()["id"]
            await wait_status(client, chat_id, "waiting")
            messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
            answer = messages[-1]["parts"]
            call, result = answer[0], answer[1]
            assert call == {
                "type": "tool_call",
                "tool_call_id": call["tool_call_id"],
                "tool_name": "web_search",
                "args": {"query": "chatd <release>"},
                "provider_executed": True,
            }
            assert result["provider_executed"] is True
            assert result["tool_call_id"] == call["tool_call_id"]
            assert result["sources"] == [
                {
                    "url": "https://example.com/search?q=chatd+%3Crelease%3E",
                    "title": "Results for chatd <release>",
                },
                {
                    "url": "https://example.org/wiki/chatd+%3Crelease%3E",
                    "title": "chatd <release> - Example wiki",
                },
            ]
            assert answer[2]["type"] == "text"

            # Another user sees neither the chat nor its search.
            assert_error_shape(await other.get(f"/api/chats/{chat_id}/messages"), 404, "not_found")

            # The admin takes web search away again: the chat's next turn is not offered it.
            patched = await root.patch(f"{CONFIGS}/{config_id}", json={"provider_tools": []})
            assert patched.status_code == 200 and patched.json()["provider_tools"] == []
            sent = await client.post(f"/api/chats/{chat_id}/messages", json={"message": "more"})
            assert sent.status_code == 200, sent.text
            await wait_status(client, chat_id, "waiting")

    turns = [c for c in _starts(call_log) if c["user"] in ("chatd <release>", "more")]
    assert [c["provider_tools"] for c in turns] == [["scripted.web_search"], []]


async def test_model_configs_refuse_provider_tools_their_provider_cannot_run(
    live: LiveReplica,
) -> None:
    admin, plain = await live.token("root", admin=True), await live.token("plain")
    async with live.client(admin) as root, live.client(plain) as user:
        chat_model = {"name": "chatty", "provider": "openai-chat", "model": "gpt-4o"}
        for tools, refused in ((["web_fetch"], "web_fetch"), (["web_search"], "web_search")):
            error = assert_error_shape(
                await root.post(CONFIGS, json={**chat_model, "provider_tools": tools}),
                422,
                "invalid_request",
            )
            assert refused in error["message"] and refused in error["detail"]
        listed = (await root.get(CONFIGS)).json()["model_configs"]
        assert "chatty" not in [c["name"] for c in listed]  # nothing half-written

        config = (await root.post(CONFIGS, json=chat_model)).json()
        assert config["provider_tools"] == []
        assert_error_shape(
            await root.patch(f"{CONFIGS}/{config['id']}", json={"provider_tools": ["web_search"]}),
            422,
            "invalid_request",
        )
        assert (await root.get(f"{CONFIGS}/{config['id']}")).json()["provider_tools"] == []
        for bad in ("web_search", [1], [None]):
            response = await root.patch(f"{CONFIGS}/{config['id']}", json={"provider_tools": bad})
            assert_error_shape(response, 422, "invalid_request")

        # Only admins set them.
        forbidden = await user.patch(
            f"{CONFIGS}/{config['id']}", json={"provider_tools": ["web_search"]}
        )
        assert forbidden.status_code == 403


async def test_a_chat_asking_for_a_provider_tool_its_model_does_not_allow_is_refused(
    live: LiveReplica,
) -> None:
    await live.scripted_model("plain-model")
    token = await live.token("ann")
    async with live.client(token) as client:
        for model in ("plain-model", None):  # a named config, and the default
            body: dict[str, Any] = {"message": "search", "tools": SEARCH}
            if model is not None:
                body["model"] = model
            error = assert_error_shape(
                await client.post("/api/chats", json=body), 422, "tool_not_allowed"
            )
            assert "web_search" in error["message"] and "web_search" in error["detail"]
        unknown = await client.post(
            "/api/chats", json={"message": "x", "tools": {"provider": ["web_fetch"]}}
        )
        error = assert_error_shape(unknown, 422, "invalid_request")
        assert "web_fetch" in error["detail"]
        for bad in ({"provider": "web_search"}, {"provider": [7]}):
            response = await client.post("/api/chats", json={"message": "x", "tools": bad})
            assert_error_shape(response, 422, "invalid_request")
        assert (await client.get("/api/chats")).json()["chats"] == []
