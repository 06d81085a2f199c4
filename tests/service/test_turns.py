"""End to end over real HTTP and SSE: a chat turn, resume, queue/interrupt, retry, tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chatd.types import TextPart
from tests.service.conftest import SSE, LiveReplica, running_replica, turn_done


def seqs(events: list[tuple[int | None, str, dict[str, Any]]]) -> list[int]:
    return [e[0] for e in events if e[0] is not None]


async def wait_status(
    client: Any, chat_id: str, *statuses: str, within: float = 20
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            chat: dict[str, Any] = (await client.get(f"/api/chats/{chat_id}")).json()
            if chat["status"] in statuses:
                return chat
            await asyncio.sleep(0.05)


async def test_a_turn_streams_parts_and_commits_the_answer(live: LiveReplica) -> None:
    token = await live.token("ada")
    async with live.client(token) as client:
        created = await client.post("/api/chats", json={"message": "hello there"})
        assert created.status_code == 201, created.text
        chat = created.json()
        assert created.headers["location"] == f"/api/chats/{chat['id']}"
        events = await SSE(client, f"/api/chats/{chat['id']}/stream").read_until(turn_done)
        names = [e[1] for e in events]
        assert "message_part" in names
        deltas = "".join(
            e[2]["part"]["delta"]
            for e in events
            if e[1] == "message_part" and e[2]["part"]["type"] == "text_delta"
        )
        assert "hello there" in deltas
        ids = seqs(events)
        assert ids == sorted(set(ids)), "seqs are unique and increasing"
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()
        roles = [m["role"] for m in messages["messages"]]
        assert roles == ["user", "assistant"]
        assert messages["messages"][1]["parts"][-1]["type"] == "text"
        assert messages["last_seq"] >= ids[-1] - 1
        committed = [e for e in events if e[1] == "message"]
        assert [e[2]["message"]["role"] for e in committed] == ["user", "assistant"]


async def test_reconnecting_with_last_event_id_delivers_every_seq_exactly_once(
    live: LiveReplica,
) -> None:
    model = await live.scripted_model("slow", delta_delay=0.01)
    token = await live.token("bob")
    async with live.client(token) as client:
        chat = (
            await client.post("/api/chats", json={"message": "a b c d e f g h", "model": model})
        ).json()
        path = f"/api/chats/{chat['id']}/stream"
        parts = 0

        def after_five_parts(_id: int | None, name: str, _data: dict[str, Any]) -> bool:
            nonlocal parts
            parts += name == "message_part"
            return parts >= 5

        first = await SSE(client, path).read_until(after_five_parts)
        last_id = seqs(first)[-1]
        rest = await SSE(client, path, last_event_id=last_id).read_until(turn_done)
        received = seqs(first) + seqs(rest)
        assert len(received) == len(set(received)), "no seq twice"
        full = await SSE(client, path).read_until(turn_done)
        assert received == seqs(full), "nothing lost across the reconnect"


async def test_a_watcher_that_hangs_up_is_released_while_the_chat_streams_on(
    live: LiveReplica,
) -> None:
    # SSE frames bypass the middleware, so the hang-up must be noticed on its own.
    model = await live.scripted_model("long", delta_delay=0.03, script=[{"text": "w " * 100}])
    token = await live.token("hangup")
    async with live.client(token) as client:
        chat = (await client.post("/api/chats", json={"message": "go", "model": model})).json()
        path = f"/api/chats/{chat['id']}/stream"
        await SSE(client, path).read_until(lambda _i, name, _d: name == "message_part")
        hub = live.replica.hub
        async with asyncio.timeout(5):
            while chat["id"] in hub.watched_chats():  # noqa: ASYNC110 - the hub has no event
                await asyncio.sleep(0.02)
        assert (await client.get(f"/api/chats/{chat['id']}")).json()["status"] == "running"
        # A new watcher still gets the live stream to the end.
        rest = await SSE(client, path).read_until(turn_done)
        assert rest[-1][2]["status"] == "waiting"


async def test_live_parts_arrive_in_order_exactly_once_over_either_http_protocol(
    tmp_path: Path,
) -> None:
    # httptools: the hub's publisher writes live frames to the socket itself; h11:
    # the SSE task writes them. Watchers join before, during and after the turn starts.
    text = " ".join(f"w{i}" for i in range(60))
    for http in ("httptools", "h11"):
        async with running_replica(tmp_path / http, http=http) as live:
            model = await live.scripted_model("paced", delta_delay=0.01, script=[{"text": text}])
            token = await live.token("proto")
            async with live.client(token) as client:
                chat = (
                    await client.post("/api/chats", json={"message": "go", "model": model})
                ).json()
                path = f"/api/chats/{chat['id']}/stream"
                early = asyncio.ensure_future(SSE(client, path).read_until(turn_done))
                await SSE(client, path).read_until(lambda _i, name, _d: name == "message_part")
                late = await SSE(client, path).read_until(turn_done)
                first = await early
                assert seqs(first) == seqs(late), http
                for events in (first, late):
                    ids = seqs(events)
                    assert ids == sorted(set(ids)), http
                    deltas = "".join(
                        e[2]["part"]["delta"]
                        for e in events
                        if e[1] == "message_part" and e[2]["part"]["type"] == "text_delta"
                    )
                    assert deltas == text, http


async def test_queue_and_interrupt_while_busy(live: LiveReplica) -> None:
    model = await live.scripted_model("slow2", delta_delay=0.05)
    token = await live.token("cy")
    async with live.client(token) as client:
        chat = (
            await client.post(
                "/api/chats", json={"message": " ".join(["word"] * 60), "model": model}
            )
        ).json()
        chat_id = chat["id"]
        await wait_status(client, chat_id, "running")
        queued = await client.post(
            f"/api/chats/{chat_id}/messages", json={"message": "later please"}
        )
        assert queued.status_code == 200, queued.text
        body = queued.json()
        assert body["message"] is None and body["queued_message"] is not None
        assert len(body["chat"]["queued_messages"]) == 1
        interrupted = await client.post(
            f"/api/chats/{chat_id}/messages",
            json={"message": "stop, do this instead", "busy_behavior": "interrupt"},
        )
        assert interrupted.status_code == 200, interrupted.text
        final = await wait_status(client, chat_id, "waiting", within=30)
        messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
        user_texts = [m["parts"][0]["text"] for m in messages if m["role"] == "user"]
        # The interrupting message ran next, then the queued one.
        assert user_texts[1:] == ["stop, do this instead", "later please"]
        assert final["queued_messages"] == []


async def test_scripted_429_shows_a_retry_event_then_succeeds(live: LiveReplica) -> None:
    model = await live.scripted_model(
        "flaky",
        script=[
            {"error": {"status_code": 429, "message": "rate limited", "retry_after": 0}},
            {"text": "made it"},
        ],
    )
    token = await live.token("dee")
    async with live.client(token) as client:
        chat = (await client.post("/api/chats", json={"message": "hi", "model": model})).json()
        events = await SSE(client, f"/api/chats/{chat['id']}/stream").read_until(turn_done)
        [retry] = [e[2] for e in events if e[1] == "retry"]
        assert retry["kind"] == "rate_limit" and retry["attempt"] == 1
        assert retry["delay_ms"] == 1000
        assert events[-1][2]["status"] == "waiting"
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
        assert messages[-1]["parts"][0]["text"] == "made it"


async def test_requires_action_round_trip(live: LiveReplica) -> None:
    token = await live.token("eve")
    tools = {
        "dynamic": [
            {
                "name": "ask_browser",
                "description": "runs in the client",
                "input_schema": {"type": "object", "properties": {}},
            }
        ]
    }
    async with live.client(token) as client:
        chat = (
            await client.post("/api/chats", json={"message": "use the browser", "tools": tools})
        ).json()
        path = f"/api/chats/{chat['id']}/stream"
        events = await SSE(client, path).read_until(turn_done)
        [action] = [e[2] for e in events if e[1] == "action_required"]
        [call] = action["tool_calls"]
        assert call["tool_name"] == "ask_browser" and action["deadline_at"]
        snapshot = (await client.get(f"/api/chats/{chat['id']}")).json()
        expected = {k: action[k] for k in ("tool_calls", "deadline_at")}
        assert snapshot["requires_action"] == expected, "a client that connects late sees it"
        done = await client.post(
            f"/api/chats/{chat['id']}/tool-results",
            json={
                "results": [
                    {
                        "tool_call_id": call["tool_call_id"],
                        "output": {"type": "text", "text": "page title: Example"},
                    }
                ]
            },
        )
        assert done.status_code == 200, done.text
        await wait_status(client, chat["id"], "waiting")
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
        assert "page title: Example" in messages[-1]["parts"][-1]["text"]


async def test_another_users_token_gets_404_on_every_chat_route(live: LiveReplica) -> None:
    owner, other = await live.token("fay"), await live.token("gus")
    async with live.client(owner) as client:
        chat_id = (await client.post("/api/chats", json={"message": "mine"})).json()["id"]
    async with live.client(other) as intruder:
        base = f"/api/chats/{chat_id}"
        for method, path, body in [
            ("GET", base, None),
            ("PATCH", base, {"title": "x"}),
            ("DELETE", base, None),
            ("GET", f"{base}/messages", None),
            ("POST", f"{base}/messages", {"message": "x"}),
            ("PATCH", f"{base}/messages/whatever", {"message": "x"}),
            ("POST", f"{base}/interrupt", None),
            (
                "POST",
                f"{base}/tool-results",
                {"results": [{"tool_call_id": "a", "output": {"type": "text", "text": "x"}}]},
            ),
            ("GET", f"{base}/queue", None),
            ("DELETE", f"{base}/queue/q", None),
            ("POST", f"{base}/queue/q/promote", None),
            ("POST", f"{base}/compact", None),
            ("POST", f"{base}/clear", None),
            ("GET", f"{base}/stream", None),
        ]:
            response = await intruder.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["kind"] == "not_found"


async def test_metrics_count_the_turns_that_ran(live: LiveReplica) -> None:
    token = await live.token("hal")
    async with live.client(token) as client:
        chat = (await client.post("/api/chats", json={"message": "count me"})).json()
        await wait_status(client, chat["id"], "waiting")
        text = (await client.get("/metrics")).text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values["coderd_chatd_steps_total"] >= 1
    assert values["coderd_chatd_ttft_seconds_count"] >= 1
    assert values["coderd_chatd_message_count_count"] >= 1


async def test_bad_requests_get_the_documented_errors(live: LiveReplica) -> None:
    token = await live.token("ivy")
    async with live.client(token) as client:
        unknown = await client.post("/api/chats", json={"message": "x", "bogus": 1})
        assert unknown.status_code == 422 and unknown.json()["error"]["kind"] == "invalid_request"
        assert unknown.json()["error"]["fields"][0]["loc"] == ["body", "bogus"]
        empty = await client.post("/api/chats", json={"message": "   "})
        assert empty.status_code == 422
        model = await client.post("/api/chats", json={"message": "x", "model": "nope:nope"})
        assert model.status_code == 422 and model.json()["error"]["kind"] == "invalid_model"
        chat = (await client.post("/api/chats", json={"message": "x"})).json()
        await wait_status(client, chat["id"], "waiting")
        conflict = await client.post(f"/api/chats/{chat['id']}/interrupt")
        assert conflict.status_code == 409
        error = conflict.json()["error"]
        assert error["kind"] == "invalid_state" and error["status"] == "waiting"
        cursor = await client.get(f"/api/chats/{chat['id']}/stream", params={"after": "abc"})
        assert cursor.status_code == 422


async def test_chat_list_watch_reports_created_and_updated_chats(live: LiveReplica) -> None:
    token = await live.token("jo")
    async with live.client(token) as client:
        seen: list[tuple[str, str]] = []

        async def watch() -> None:
            async with client.stream("GET", "/api/chats/watch") as response:
                assert response.status_code == 200
                name = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        chat = json.loads(line[6:])["chat"]
                        seen.append((name, chat["status"]))
                        if chat["status"] == "waiting":
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        await client.post("/api/chats", json={"message": "watch me"})
        await asyncio.wait_for(watcher, 20)
        assert seen[0] == ("chat_created", "pending")
        assert ("chat_updated", "running") in seen
        assert seen[-1] == ("chat_updated", "waiting")


async def test_builtin_tools_are_opt_in_and_run_in_the_chats_workspace(
    live: LiveReplica,
) -> None:
    token = await live.token("kai")
    async with live.client(token) as client:
        plain = (await client.post("/api/chats", json={"message": "no tools here"})).json()
        await wait_status(client, plain["id"], "waiting")
        plain_roles = [
            m["role"]
            for m in (await client.get(f"/api/chats/{plain['id']}/messages")).json()["messages"]
        ]
        assert plain_roles == ["user", "assistant"]  # nothing ran on the server

        chat = (
            await client.post(
                "/api/chats",
                json={"message": "write it down", "tools": {"builtin": ["write_file"]}},
            )
        ).json()
        await wait_status(client, chat["id"], "waiting")
        messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
        [result] = [p for m in messages for p in m["parts"] if p["type"] == "tool_result"]
        assert result["tool_name"] == "write_file"
        assert result["result"]["type"] == "text", result
        root = live.replica.settings.effective_workspace_root
        assert any(path.is_file() for path in root.rglob("hello.txt"))

        bad = await client.post(
            "/api/chats", json={"message": "x", "tools": {"builtin": ["rm_rf"]}}
        )
        assert bad.status_code == 422
        assert "rm_rf" in bad.json()["error"]["detail"]


async def test_requires_action_deadline_ends_the_turn_with_a_clear_error(tmp_path: Path) -> None:
    async with running_replica(tmp_path, requires_action_timeout=1.0) as live:
        token = await live.token("lee")
        tools = {"dynamic": [{"name": "ask_browser", "input_schema": {"type": "object"}}]}
        async with live.client(token) as client:
            chat = (
                await client.post("/api/chats", json={"message": "use it", "tools": tools})
            ).json()
            await wait_status(client, chat["id"], "requires_action")
            errored = await wait_status(client, chat["id"], "error", within=20)
            assert errored["last_error"]["kind"] == "requires_action_timeout"
            assert "send a message to continue" in errored["last_error"]["message"]
            messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
            [result] = [p for m in messages for p in m["parts"] if p["type"] == "tool_result"]
            assert result["result"]["type"] == "error"
            # A late submission is refused; the chat is not stuck.
            late = await client.post(
                f"/api/chats/{chat['id']}/tool-results",
                json={
                    "results": [
                        {
                            "tool_call_id": result["tool_call_id"],
                            "output": {"type": "text", "text": "too late"},
                        }
                    ]
                },
            )
            assert late.status_code == 409


async def test_manual_compaction_and_clear_keep_the_visible_history(live: LiveReplica) -> None:
    token = await live.token("max")
    async with live.client(token) as client:
        chat = (await client.post("/api/chats", json={"message": "FACT: the code is 42"})).json()
        chat_id = chat["id"]
        await wait_status(client, chat_id, "waiting")
        compacted = await client.post(f"/api/chats/{chat_id}/compact")
        assert compacted.status_code == 200, compacted.text
        await wait_status(client, chat_id, "waiting")
        visible = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
        assert [m["role"] for m in visible][-2:] == ["assistant", "tool"]  # chat_summarized note
        hidden = (
            await client.get(f"/api/chats/{chat_id}/messages", params={"include_hidden": "true"})
        ).json()["messages"]
        assert any(m.get("hidden") == "compressed" for m in hidden), "replaced, not deleted"
        history = await live.store.load_history(chat_id)
        assert any(m.is_summary for m in history.messages)
        # Nothing new since the summary: a second request is refused.
        again = await client.post(f"/api/chats/{chat_id}/compact")
        assert again.status_code == 409 and again.json()["error"]["kind"] == "nothing_to_compact"
        # Nor is a clear with nothing new since that boundary; after another turn it is.
        nothing = await client.post(f"/api/chats/{chat_id}/clear")
        assert nothing.status_code == 409
        await client.post(f"/api/chats/{chat_id}/messages", json={"message": "more"})
        await wait_status(client, chat_id, "waiting")
        cleared = await client.post(f"/api/chats/{chat_id}/clear")
        assert cleared.status_code == 200, cleared.text
        after = (await live.store.load_history(chat_id)).messages
        assert not any(m.is_summary for m in after)


async def test_chat_list_search_and_archived_filter(live: LiveReplica) -> None:
    token = await live.token("nia")
    async with live.client(token) as client:
        ids = {}
        for title in ("Deploy plan", "Lunch 100% ideas", "deployment notes"):
            chat = (await client.post("/api/chats", json={"message": "hi", "title": title})).json()
            ids[title] = chat["id"]
            await wait_status(client, chat["id"], "waiting")
        archived = await client.patch(
            f"/api/chats/{ids['deployment notes']}", json={"archived": True}
        )
        assert archived.status_code == 200, archived.text

        async def titles(**params: str) -> list[str]:
            body = (await client.get("/api/chats", params=params)).json()
            return sorted(c["title"] for c in body["chats"])

        assert await titles(q="DEPLOY") == ["Deploy plan"]
        assert await titles(q="deploy", archived="all") == ["Deploy plan", "deployment notes"]
        assert await titles(archived="true") == ["deployment notes"]
        assert await titles(q="100%") == ["Lunch 100% ideas"]  # % is matched literally
        assert await titles(q="1_0") == []


async def test_a_model_configs_small_context_limit_triggers_automatic_compaction(
    live: LiveReplica,
) -> None:
    config = await live.store.create_model_config(
        "tiny", "scripted", "tiny", context_limit=60, compaction_threshold_percent=50
    )
    token = await live.token("ola")
    async with live.client(token) as client:
        chat = (
            await client.post("/api/chats", json={"message": "first " * 20, "model": config.name})
        ).json()
        await wait_status(client, chat["id"], "waiting")
        await client.post(f"/api/chats/{chat['id']}/messages", json={"message": "second"})
        await wait_status(client, chat["id"], "waiting")
        everything = (
            await client.get(f"/api/chats/{chat['id']}/messages", params={"include_hidden": "true"})
        ).json()["messages"]
        assert any(m.get("hidden") == "compressed" for m in everything)
        assert any(p.get("tool_name") == "chat_summarized" for m in everything for p in m["parts"])
    async with live.client(token) as client:
        text = (await client.get("/metrics")).text
    assert (
        'coderd_chatd_compaction_total{model="tiny",provider="scripted",result="success"}' in text
    )


async def test_a_new_chat_gets_a_title_from_its_model(live: LiveReplica) -> None:
    token = await live.token("tia")
    async with live.client(token) as client:
        created = await client.post(
            "/api/chats", json={"message": "how do tides work on other planets, really?"}
        )
        chat_id = created.json()["id"]
        assert created.json()["title"] == "how do tides work on other planets, really?"
        sse = SSE(client, f"/api/chats/{chat_id}/stream")
        events = await sse.read_until(lambda _id, name, _data: name == "title")
        assert events[-1][2]["title"] == "How do tides work on other planets, really"
        chat = (await client.get(f"/api/chats/{chat_id}")).json()
        assert chat["title"] == "How do tides work on other planets, really"
        done = await wait_status(client, chat_id, "waiting")
        usage = done["usage"]
        messages = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
        steps = [m["usage"] for m in messages if m["role"] == "assistant"]
        assert usage["total_tokens"] == sum(u["total_tokens"] for u in steps) > 0
        assert usage["output_tokens"] == sum(u["output_tokens"] for u in steps) > 0
        assert usage["cost_micros"] is None  # the scripted model has no price


async def test_a_title_the_user_set_is_never_replaced(live: LiveReplica) -> None:
    chat = await live.store.create_chat(
        (await live.store.create_user("tib")).id, [TextPart("hello")], title="Mine"
    )
    kept = await live.store.update_title(
        chat.id, "Generated", source="generated", only_if_source="default"
    )
    assert (kept.title, kept.title_source) == ("Mine", "user")


async def test_titles_come_from_chatd_title_model_when_it_is_set(tmp_path: Path) -> None:
    async with running_replica(tmp_path, title_model="titler") as live:
        titler = await live.store.create_model_config("titler", "scripted", "titler")
        worker = live.replica.worker
        resolved: list[str | None] = []
        build = worker._build_model

        async def recording(config: Any) -> Any:
            resolved.append(config.id)
            return await build(config)

        worker._build_model = recording
        token = await live.token("tic")
        async with live.client(token) as client:
            chat_id = (await client.post("/api/chats", json={"message": "name this"})).json()["id"]
            sse = SSE(client, f"/api/chats/{chat_id}/stream")
            events = await sse.read_until(lambda _id, name, _data: name == "title")
            assert events[-1][2]["title"] == "Name this"
            await wait_status(client, chat_id, "waiting")
        chat = await live.store.get_chat(chat_id)
        assert titler.id in resolved  # the title call
        own = await live.store.get_model_config(chat.model_config_id, or_default=True)
        assert own.id in resolved  # the turn, on the chat's own model


async def test_a_fast_stream_reaches_the_log_every_256_events_not_only_on_the_tick(
    tmp_path: Path,
) -> None:
    # The flush tick is a minute away: only the 256-pending trigger (spec §5.5) can
    # write the turn's deltas to the durable log while it still streams.
    text = " ".join(f"w{i}" for i in range(600))
    async with running_replica(tmp_path, stream_flush_interval=60.0) as live:
        model = await live.scripted_model("fast", delta_delay=0.01, script=[{"text": text}])
        token = await live.token("fast")
        async with live.client(token) as client:
            chat = (await client.post("/api/chats", json={"message": "go", "model": model})).json()
            async with asyncio.timeout(20):
                while len(await live.store.read_events(chat["id"], limit=1000)) < 256:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            during = (await client.get(f"/api/chats/{chat['id']}")).json()
            assert during["status"] == "running"
            await wait_status(client, chat["id"], "waiting", within=30)
