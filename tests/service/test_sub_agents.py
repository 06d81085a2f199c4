"""Sub-agents over real HTTP with the scripted model: a parent spawns two children that
run at the same time, waits for both without holding a worker slot, and answers with
their results; every event of the three chats streams once; the parent's cost is the
tree's; interrupting or deleting the parent reaches the children; a child cannot spawn."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.test_app_basics import assert_error_shape
from tests.service.conftest import SSE, LiveReplica, running_replica
from tests.service.test_cost import CHEAP, implied_cost
from tests.service.test_turns import seqs, wait_status

# Tools that need no sandbox: the children write a file in the parent's workspace.
TOOLS = {"builtin": ["read_file", "write_file"]}
AGENT_TOOLS = ["spawn_agent", "wait_agent", "message_agent", "interrupt_agent", "list_agents"]


def spawn_and_wait(
    *prompts: str, wait: dict[str, Any] | None = None, model: str | None = None
) -> str:
    named = {"model": model} if model else {}
    lines = [f"/call spawn_agent {json.dumps({'prompt': p, **named})}" for p in prompts]
    return "\n".join([*lines, f"/call wait_agent {json.dumps(wait or {})}"])


async def paced_config(admin: httpx.AsyncClient, delay: float) -> str:
    """A priced scripted model that streams a word every `delay` seconds."""
    created = await admin.post(
        "/api/chats/model-configs",
        json={
            "name": "paced",
            "provider": "scripted",
            "model": "paced-1",
            "options": {"delta_delay": delay},
            "pricing": CHEAP,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def model_calls(call_log: Path, user: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in call_log.read_text().splitlines()]
    return [c for c in lines if c["user"] == user]


def wait_result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The result of the chat's one `wait_agent` call."""
    [result] = [
        p["result"]
        for m in messages
        for p in m["parts"]
        if p["type"] == "tool_result" and p["tool_name"] == "wait_agent"
    ]
    return dict(result)


async def children_of(client: httpx.AsyncClient, chat_id: str, count: int) -> list[str]:
    async with asyncio.timeout(20):
        while True:
            chat = (await client.get(f"/api/chats/{chat_id}")).json()
            if len(chat["children"]) >= count:
                return [c["id"] for c in chat["children"]]
            await asyncio.sleep(0.02)


async def test_a_parent_waits_for_two_concurrent_children_and_answers_with_both(
    tmp_path: Path,
) -> None:
    call_log = tmp_path / "calls.jsonl"
    async with running_replica(tmp_path, scripted_call_log=call_log) as live:
        ann, bob = await live.token("ann"), await live.token("bob")
        admin_token = await live.token("root", admin=True)
        async with (
            live.client(admin_token) as admin,
            live.client(ann) as client,
            live.client(bob) as other,
        ):
            model = await paced_config(admin, 0.03)
            message = spawn_and_wait("count the apples", "count the pears")
            created = await client.post(
                "/api/chats", json={"message": message, "tools": TOOLS, "model": model}
            )
            assert created.status_code == 201, created.text
            parent_id = created.json()["id"]
            assert created.json()["parent_id"] is None
            first, second = await children_of(client, parent_id, 2)

            # While both work, the waiting parent holds no runner.
            chat = await wait_status(client, parent_id, "requires_action")
            assert chat["requires_action"] is None  # nothing for the client to submit
            assert parent_id not in live.replica.worker.runners
            parent = await wait_status(client, parent_id, "waiting")

            # Each child is a chat of the owner's, under its parent, in its workspace.
            for child_id, prompt in ((first, "count the apples"), (second, "count the pears")):
                child = (await client.get(f"/api/chats/{child_id}")).json()
                assert child["parent_id"] == parent_id and child["status"] == "waiting"
                assert child["model_config_id"] == model
                assert child["tools"] == created.json()["tools"]
                assert child["title"].lower() == prompt  # a generated title
                assert_error_shape(await other.get(f"/api/chats/{child_id}"), 404, "not_found")
            assert [c["status"] for c in parent["children"]] == ["waiting", "waiting"]
            root = live.replica.settings.effective_workspace_root
            assert (root / parent_id / "hello.txt").is_file()
            assert not (root / first).exists()

            # The two children's model calls overlap in time.
            spans = []
            for prompt in ("count the apples", "count the pears"):
                times = [c["t"] for c in model_calls(call_log, prompt)]
                assert len(times) == 4  # two calls (a tool step, the answer), start and end
                spans.append((min(times), max(times)))
            assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
            # A child is offered its parent's tools, never the agent tools.
            child_tools = model_calls(call_log, "count the apples")[0]["tools"]
            assert child_tools == ["read_file", "write_file"]
            assert model_calls(call_log, message)[0]["tools"][-5:] == AGENT_TOOLS

            # The parent's answer carries both children's final answers.
            messages = (await client.get(f"/api/chats/{parent_id}/messages")).json()["messages"]
            report = json.loads(wait_result(messages)["text"])
            assert report["timed_out"] is False
            assert [(a["id"], a["status"]) for a in report["agents"]] == [
                (first, "waiting"),
                (second, "waiting"),
            ]
            assert all("The tool answered" in a["answer"] for a in report["agents"])
            final = messages[-1]["parts"][-1]["text"]
            assert "count the apples" in final and "count the pears" in final

            # Every event of every chat, read from the start: each seq once, in order,
            # and a second read returns the same events.
            for chat_id in (parent_id, first, second):
                events = await SSE(client, f"/api/chats/{chat_id}/stream?after=0").read_until(
                    lambda _i, name, data: name == "status" and data["status"] == "waiting"
                )
                ids = seqs(events)
                assert ids == sorted(set(ids)) and ids[0] == 1, chat_id
                again = await SSE(client, f"/api/chats/{chat_id}/stream?after=0").read_until(
                    lambda i, _n, _d, last=ids[-1]: i == last
                )
                assert seqs(again)[: len(ids)] == ids

            # The parent's cost is the tree's, with each part shown.
            cost = (await client.get(f"/api/chats/{parent_id}/cost")).json()
            parts = [cost["own"], *cost["agents"]]
            assert cost["cost_micros"] == sum(p["cost_micros"] for p in parts) > 0
            assert cost["messages"] == sum(p["messages"] for p in parts)
            assert [a["chat_id"] for a in cost["agents"]] == [first, second]
            for chat_id, part in zip((parent_id, first, second), parts, strict=True):
                listed = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
                steps = [m["usage"] for m in listed if m["role"] == "assistant"]
                assert part["cost_micros"] == sum(implied_cost(u, CHEAP) for u in steps)
            child_cost = (await client.get(f"/api/chats/{first}/cost")).json()
            assert "agents" not in child_cost
            assert child_cost["cost_micros"] == cost["agents"][0]["cost_micros"]
            assert_error_shape(await other.get(f"/api/chats/{parent_id}/cost"), 404, "not_found")


async def test_interrupting_the_parent_stops_its_children_within_a_second(
    tmp_path: Path,
) -> None:
    async with running_replica(tmp_path) as live:
        admin_token, ann = await live.token("root", admin=True), await live.token("ann")
        async with live.client(admin_token) as admin, live.client(ann) as client:
            model = await paced_config(admin, 0.5)  # the children would take half a minute
            message = spawn_and_wait("a long task", "another long task")
            created = await client.post(
                "/api/chats", json={"message": message, "tools": TOOLS, "model": model}
            )
            parent_id = created.json()["id"]
            children = await children_of(client, parent_id, 2)
            for child_id in children:
                await wait_status(client, child_id, "running")
            await wait_status(client, parent_id, "requires_action")

            interrupted = await client.post(f"/api/chats/{parent_id}/interrupt")
            assert interrupted.status_code == 200, interrupted.text
            loop = asyncio.get_running_loop()
            started = loop.time()
            for chat_id in (parent_id, *children):
                await wait_status(client, chat_id, "waiting", "error", within=1.0)
            assert loop.time() - started < 1.0
            messages = (await client.get(f"/api/chats/{parent_id}/messages")).json()["messages"]
            assert wait_result(messages)["type"] == "error"  # the wait was cancelled

            # An idle parent whose child works: the interrupt reaches the child.
            sent = await client.post(
                f"/api/chats/{parent_id}/messages",
                json={"message": '/call spawn_agent {"prompt": "a third long task"}'},
            )
            assert sent.status_code in (200, 201, 202), sent.text
            [third] = [c for c in await children_of(client, parent_id, 3) if c not in children]
            await wait_status(client, parent_id, "waiting")
            await wait_status(client, third, "running")
            assert (await client.post(f"/api/chats/{parent_id}/interrupt")).status_code == 200
            await wait_status(client, third, "waiting", "error", within=1.0)


async def test_deleting_a_parent_deletes_its_settled_children(tmp_path: Path) -> None:
    async with running_replica(tmp_path) as live:
        ann, bob = await live.token("ann"), await live.token("bob")
        async with live.client(ann) as client, live.client(bob) as other:
            message = spawn_and_wait("quick one")
            created = await client.post("/api/chats", json={"message": message, "tools": TOOLS})
            parent_id = created.json()["id"]
            [child] = await children_of(client, parent_id, 1)
            await wait_status(client, parent_id, "waiting")
            assert_error_shape(await other.delete(f"/api/chats/{parent_id}"), 404, "not_found")
            assert_error_shape(await client.delete(f"/api/chats/{child}x"), 404, "not_found")
            assert (await client.delete(f"/api/chats/{parent_id}")).status_code == 204
            for chat_id in (parent_id, child):
                assert_error_shape(await client.get(f"/api/chats/{chat_id}"), 404, "not_found")
            assert (await client.get("/api/chats")).json()["chats"] == []


async def test_a_child_cannot_spawn_and_agent_tools_validate_their_input(
    live: LiveReplica,
) -> None:
    child_script = [
        {"tool_calls": [["spawn_agent", {"prompt": "a grandchild"}]]},
        {"text": "I could not start an agent."},
    ]
    model = await live.scripted_model("child-model", script=child_script)
    async with live.client(await live.token("ann")) as client:
        lines = [
            '/call spawn_agent {"prompt": "try to spawn", "model": "child-model"}',
            '/call spawn_agent {"prompt": "x", "model": "no-such-model"}',
            '/call spawn_agent {"prompt": "   "}',
            '/call message_agent {"id": "nope", "message": "hi"}',
            '/call interrupt_agent {"id": "nope"}',
            '/call wait_agent {"timeout": "soon"}',
            "/call wait_agent {}",
        ]
        created = await client.post(
            "/api/chats", json={"message": "\n".join(lines), "tools": TOOLS}
        )
        parent_id = created.json()["id"]
        await wait_status(client, parent_id, "waiting")
        [child] = (await client.get(f"/api/chats/{parent_id}")).json()["children"]
        await wait_status(client, child["id"], "waiting")

        # The child's spawn_agent call got the depth-1 rule as its error result.
        messages = (await client.get(f"/api/chats/{child['id']}/messages")).json()["messages"]
        [result] = [p for m in messages for p in m["parts"] if p["type"] == "tool_result"]
        assert result["tool_name"] == "spawn_agent" and result["result"]["type"] == "error"
        assert "agents are one level deep" in result["result"]["error"]
        assert (await client.get(f"/api/chats/{parent_id}")).json()["children"] == [child]

        parent = (await client.get(f"/api/chats/{parent_id}/messages")).json()["messages"]
        results = [p for m in parent for p in m["parts"] if p["type"] == "tool_result"]
        errors = [r["result"].get("error", "") for r in results[1:6]]
        assert "no enabled model is called 'no-such-model'" in errors[0]
        assert "the prompt is empty" in errors[1]
        assert "No agent of this chat has the id 'nope'" in errors[2]
        assert "No agent of this chat has the id 'nope'" in errors[3]
        assert 'timeout must be a duration such as "30s"' in errors[4]
        report = json.loads(results[6]["result"]["text"])
        assert [a["id"] for a in report["agents"]] == [child["id"]]
        details = (await client.get(f"/api/chats/{child['id']}")).json()
        assert details["model"] == f"scripted:{model}"  # the model spawn_agent named


def metric(text: str, name: str, kind: str) -> float:
    """The sample `name{kind="…"}` of a /metrics page."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("kind") == kind:
                return float(sample.value)
    raise AssertionError(f"{name}{{kind={kind!r}}} is not on /metrics")


async def test_fifty_spawns_queue_behind_the_agent_limit_and_all_finish(tmp_path: Path) -> None:
    call_log = tmp_path / "calls.jsonl"
    limit = 4
    async with running_replica(
        tmp_path, scripted_call_log=call_log, max_running_agents=limit, max_running_chats=2
    ) as live:
        admin_token, ann = await live.token("root", admin=True), await live.token("ann")
        async with live.client(admin_token) as admin, live.client(ann) as client:
            # The parent streams at full speed (its answer holds all fifty reports);
            # each agent takes a while.
            model = await paced_config(admin, 0.02)
            fast = await live.scripted_model("fast")
            prompts = [f"task number {i}" for i in range(50)]
            created = await client.post(
                "/api/chats",
                json={
                    "message": spawn_and_wait(*prompts, model=model),
                    "tools": TOOLS,
                    "model": fast,
                },
            )
            parent_id = created.json()["id"]

            # Watch the deployment while it works: never more than `limit` agents run.
            store, peak, queued_seen = live.replica.store, 0, 0.0
            async with asyncio.timeout(120):
                while (await store.get_chat(parent_id)).status.value != "waiting":
                    children = await store.list_children(parent_id)
                    running = [c for c in children if c.status.value in ("running", "interrupting")]
                    peak = max(peak, len(running))
                    page = (await client.get("/metrics")).text
                    assert metric(page, "coderd_chatd_capacity_running", "agent") <= limit
                    queued_seen = max(
                        queued_seen, metric(page, "coderd_chatd_capacity_queued", "agent")
                    )
                    await asyncio.sleep(0.05)
            assert peak == limit  # the limit was reached, and held
            assert queued_seen > 0  # and the rest waited their turn, as the metrics showed

            # The model calls agree: at no instant did more than `limit` agents call it.
            spans = []
            for prompt in prompts:
                times = [c["t"] for c in model_calls(call_log, prompt)]
                assert times, prompt
                spans.append((min(times), max(times)))
            edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
            overlap = max(itertools.accumulate(step for _, step in edges))
            assert overlap <= limit

            # Every agent finished and the parent answered with all fifty.
            children = (await client.get(f"/api/chats/{parent_id}")).json()["children"]
            assert len(children) == 50 and {c["status"] for c in children} == {"waiting"}
            messages = (await client.get(f"/api/chats/{parent_id}/messages")).json()["messages"]
            final = messages[-1]["parts"][-1]["text"]
            assert all(p in final for p in prompts)
            page = (await client.get("/metrics")).text
            assert metric(page, "coderd_chatd_capacity_limit", "agent") == limit
            assert metric(page, "coderd_chatd_capacity_limit", "chat") == 2
            waits = metric(page, "coderd_chatd_capacity_wait_seconds_count", "agent")
            assert waits == 50
            assert metric(page, "coderd_chatd_capacity_wait_seconds_sum", "agent") > 0
