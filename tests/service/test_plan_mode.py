"""Plan mode and ask_user_question over real HTTP with the scripted model: which tools a
run offers (its call log), propose_plan ending the turn, approval, and the user's answer
to a question as its tool result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.test_app_basics import assert_error_shape
from tests.service.conftest import running_replica
from tests.service.test_turns import wait_status

# No tool that runs commands: the test needs no sandbox.
TOOLS = {"builtin": ["read_file", "write_file", "edit_files"]}
PLAN = "# Plan\n\n1. Write `hello.txt`."
PLAN_TOOLS = ["read_file", "propose_plan", "ask_user_question"]


def _offered(call_log: Path, user: str) -> list[list[str]]:
    """The tools offered to each model call of the turns the user message `user` began."""
    lines = [json.loads(line) for line in call_log.read_text().splitlines()]
    return [c["tools"] for c in lines if c["phase"] == "start" and c["user"] == user]


async def _messages(client: Any, chat_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = (await client.get(f"/api/chats/{chat_id}/messages")).json()[
        "messages"
    ]
    return messages


async def test_plan_mode_offers_read_only_tools_until_the_plan_is_approved(
    tmp_path: Path,
) -> None:
    call_log = tmp_path / "calls.jsonl"
    async with running_replica(tmp_path, scripted_call_log=call_log) as live:
        ann, bob = await live.token("ann"), await live.token("bob")
        async with live.client(ann) as client, live.client(bob) as other:
            propose = f"/call propose_plan {json.dumps({'plan': PLAN})}"
            created = await client.post(
                "/api/chats", json={"message": propose, "tools": TOOLS, "mode": "plan"}
            )
            assert created.status_code == 201, created.text
            assert created.json()["mode"] == "plan"
            chat_id = created.json()["id"]
            base = f"/api/chats/{chat_id}"
            chat = await wait_status(client, chat_id, "waiting")
            assert chat["mode"] == "plan"

            # One model call: propose_plan ended the turn, its plan is the call's input.
            assert _offered(call_log, propose) == [PLAN_TOOLS]
            answer = (await _messages(client, chat_id))[-2:]
            assert [m["role"] for m in answer] == ["assistant", "tool"]
            [call] = answer[0]["parts"]
            assert call["tool_name"] == "propose_plan" and call["args"] == {"plan": PLAN}
            [result] = answer[1]["parts"]
            assert result["tool_call_id"] == call["tool_call_id"]
            assert result["result"]["type"] == "text"

            # Answering with a message keeps plan mode: still no write tool.
            sent = await client.post(f"{base}/messages", json={"message": "shorter, please"})
            assert sent.status_code == 200, sent.text
            assert (await wait_status(client, chat_id, "waiting"))["mode"] == "plan"
            offered = _offered(call_log, "shorter, please")
            assert offered and all(tools == PLAN_TOOLS for tools in offered)

            # Another user can neither approve nor change the mode; nothing changes.
            assert_error_shape(await other.post(f"{base}/plan/approve"), 404, "not_found")
            assert_error_shape(await other.patch(base, json={"mode": None}), 404, "not_found")
            assert (await client.get(base)).json()["mode"] == "plan"
            bad = await client.post(f"{base}/plan/approve", json={"message": "  "})
            assert_error_shape(bad, 422, "invalid_request")

            # Approval leaves plan mode; its turn is offered the write tools and uses one.
            approved = await client.post(f"{base}/plan/approve")
            assert approved.status_code == 200, approved.text
            assert approved.json()["chat"]["mode"] is None
            approval = approved.json()["message"]["parts"][0]["text"]
            assert approval == "The plan is approved: carry it out."
            assert (await wait_status(client, chat_id, "waiting"))["mode"] is None
            first = _offered(call_log, approval)[0]
            assert first == [
                "read_file",
                "write_file",
                "edit_files",
                "ask_user_question",
                *("spawn_agent", "wait_agent", "message_agent", "interrupt_agent", "list_agents"),
            ]
            parts = [p for m in await _messages(client, chat_id) for p in m["parts"]]
            assert [p.get("tool_name") for p in parts[-3:]] == ["write_file", "write_file", None]
            root = live.replica.settings.effective_workspace_root
            assert any(path.is_file() for path in root.rglob("hello.txt"))

            # No plan to approve now (409); PATCH turns plan mode back on and off.
            assert_error_shape(await client.post(f"{base}/plan/approve"), 409, "invalid_state")
            assert (await client.patch(base, json={"mode": "plan"})).json()["mode"] == "plan"
            assert (await client.patch(base, json={"title": "t"})).json()["mode"] == "plan"
            assert (await client.patch(base, json={"mode": None})).json()["mode"] is None


async def test_a_mode_other_than_plan_is_refused(tmp_path: Path) -> None:
    async with running_replica(tmp_path) as live, live.client(await live.token("cal")) as client:
        for mode in ("build", "PLAN", 1, True, ["plan"]):
            response = await client.post("/api/chats", json={"message": "x", "mode": mode})
            assert_error_shape(response, 422, "invalid_request")
        assert (await client.get("/api/chats")).json()["chats"] == []  # nothing written
        chat = (await client.post("/api/chats", json={"message": "x"})).json()
        assert chat["mode"] is None
        for mode in ("build", 0):
            response = await client.patch(f"/api/chats/{chat['id']}", json={"mode": mode})
            assert_error_shape(response, 422, "invalid_request")
        reserved = {"dynamic": [{"name": "propose_plan"}]}
        response = await client.post("/api/chats", json={"message": "x", "tools": reserved})
        error = assert_error_shape(response, 422, "invalid_request")
        assert "reserved for plan mode" in error["detail"]


async def test_ask_user_question_waits_for_an_answer_among_its_choices(tmp_path: Path) -> None:
    async with running_replica(tmp_path) as live:
        ann, bob = await live.token("ann"), await live.token("bob")
        async with live.client(ann) as client, live.client(bob) as other:
            question = {"question": "Which colour?", "choices": ["red", "blue"]}
            ask = f"/call ask_user_question {json.dumps(question)}"
            chat_id = (
                await client.post("/api/chats", json={"message": ask, "tools": TOOLS})
            ).json()["id"]
            chat = await wait_status(client, chat_id, "requires_action")
            [call] = chat["requires_action"]["tool_calls"]
            assert call["tool_name"] == "ask_user_question"
            path = f"/api/chats/{chat_id}/tool-results"

            def answer(text: str) -> dict[str, Any]:
                output = {"type": "text", "text": text}
                return {"results": [{"tool_call_id": call["tool_call_id"], "output": output}]}

            assert_error_shape(await other.post(path, json=answer("blue")), 404, "not_found")
            error = assert_error_shape(
                await client.post(path, json=answer("green")), 422, "invalid_tool_results"
            )
            assert '"red", "blue"' in error["message"]
            assert (await client.get(f"/api/chats/{chat_id}")).json()["status"] == (
                "requires_action"
            )

            done = await client.post(path, json=answer("blue"))
            assert done.status_code == 200, done.text
            await wait_status(client, chat_id, "waiting")
            messages = await _messages(client, chat_id)
            [result] = messages[-2]["parts"]
            assert result["tool_name"] == "ask_user_question"
            assert result["result"] == {"type": "text", "text": "blue"}
            assert "blue" in messages[-1]["parts"][-1]["text"]
