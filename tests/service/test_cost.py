"""Priced model configs over HTTP: each step's cost, a chat's cost, a user's usage."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from typing import Any

import httpx

from tests.service.conftest import LiveReplica

CHEAP = {"input_price_per_million_tokens": "1.5", "output_price_per_million_tokens": "2.25"}
DEAR = {
    "input_price_per_million_tokens": 30,
    "output_price_per_million_tokens": "60.125",
    "cache_read_price_per_million_tokens": "3",
}


async def waited(client: httpx.AsyncClient, chat_id: str) -> dict[str, Any]:
    """The chat once its turn ended (a send leaves it pending until then)."""
    async with asyncio.timeout(20):
        while True:
            chat = (await client.get(f"/api/chats/{chat_id}")).json()
            if chat["status"] in ("waiting", "error"):
                assert chat["status"] == "waiting", chat
                return chat
            await asyncio.sleep(0.02)


async def priced_config(admin: httpx.AsyncClient, name: str, prices: dict[str, Any]) -> str:
    created = await admin.post(
        "/api/chats/model-configs",
        json={
            "name": name,
            "provider": "scripted",
            "model": f"{name}-1",
            "options": {"script": [{"text": f"a reply from {name} in words"}]},
            "pricing": prices,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def implied_cost(usage: dict[str, Any], prices: dict[str, Any]) -> int:
    total = Decimal(usage["input_tokens"]) * Decimal(
        str(prices.get("input_price_per_million_tokens", 0))
    ) + Decimal(usage["output_tokens"]) * Decimal(
        str(prices.get("output_price_per_million_tokens", 0))
    )
    return math.ceil(total)


def metric(text: str, model: str) -> float:
    prefix = f'coderd_chatd_cost_micros_total{{model="{model}",provider="scripted"}} '
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


async def test_turns_are_priced_and_cost_and_usage_add_up_across_turns_and_models(
    live: LiveReplica,
) -> None:
    admin_token = await live.token("root", admin=True)
    user_token = await live.token("ann")
    async with live.client(admin_token) as admin, live.client(user_token) as client:
        await priced_config(admin, "cheap", CHEAP)
        await priced_config(admin, "dear", DEAR)
        first = (await client.post("/api/chats", json={"model": "cheap", "message": "hi"})).json()
        await waited(client, first["id"])
        sent = await client.post(
            f"/api/chats/{first['id']}/messages", json={"message": "and more", "model": "dear"}
        )
        assert sent.status_code in (200, 201, 202), sent.text
        await waited(client, first["id"])
        second = (await client.post("/api/chats", json={"model": "cheap", "message": "x"})).json()
        await waited(client, second["id"])

        costs: dict[str, list[int]] = {"cheap-1": [], "dear-1": []}
        tokens = {"input_tokens": 0, "output_tokens": 0}
        for chat_id in (first["id"], second["id"]):
            listed = (await client.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
            for message in listed:
                if message["role"] != "assistant":
                    continue
                usage = message["usage"]
                prices = CHEAP if message["model"] == "cheap-1" else DEAR
                assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
                assert usage["cost_micros"] == implied_cost(usage, prices)
                costs[message["model"]].append(usage["cost_micros"])
                for name in tokens:
                    tokens[name] += usage[name]
        assert [len(c) for c in costs.values()] == [2, 1]
        # 1.5 and 2.25 per million: a whole micro-USD only by rounding up some steps
        assert all(c > 0 for c in costs["cheap-1"])

        cost = (await client.get(f"/api/chats/{first['id']}/cost")).json()
        assert cost["cost_micros"] == costs["cheap-1"][0] + costs["dear-1"][0]
        assert [(m["model"], m["cost_micros"]) for m in cost["by_model"]] == [
            ("cheap-1", costs["cheap-1"][0]),
            ("dear-1", costs["dear-1"][0]),
        ]
        assert cost["cache_read_tokens"] == 0 and cost["cache_creation_tokens"] == 0
        assert cost["unpriced_messages"] == 0 and cost["messages"] == 2

        usage = (await client.get("/api/users/me/usage")).json()
        assert usage["cost_micros"] == sum(costs["cheap-1"]) + sum(costs["dear-1"])
        assert usage["input_tokens"] == tokens["input_tokens"]
        assert usage["output_tokens"] == tokens["output_tokens"]
        assert [(m["model"], m["cost_micros"], m["messages"]) for m in usage["by_model"]] == [
            ("cheap-1", sum(costs["cheap-1"]), 2),
            ("dear-1", costs["dear-1"][0], 1),
        ]
        later = (await client.get("/api/users/me/usage?since=2999-01-01T00:00:00Z")).json()
        assert (later["cost_micros"], later["by_model"]) == (0, [])
        assert later["since"] == "2999-01-01T00:00:00.000Z"
        earlier = (await client.get("/api/users/me/usage", params={"since": "2000-01-01"})).json()
        assert earlier["cost_micros"] == usage["cost_micros"]

        me = (await client.get("/api/users/me")).json()
        as_admin = (await admin.get(f"/api/users/{me['id']}/usage")).json()
        assert as_admin["cost_micros"] == usage["cost_micros"]
        assert as_admin["by_model"] == usage["by_model"]

        scraped = (await client.get("/metrics")).text
        assert metric(scraped, "cheap-1") == sum(costs["cheap-1"])
        assert metric(scraped, "dear-1") == costs["dear-1"][0]


async def test_an_unpriced_model_records_tokens_and_no_cost(live: LiveReplica) -> None:
    model = await live.scripted_model("free", script=[{"text": "gratis"}])
    async with live.client(await live.token("bob")) as client:
        chat = (await client.post("/api/chats", json={"model": model, "message": "hi"})).json()
        await waited(client, chat["id"])
        listed = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
        [reply] = [m for m in listed if m["role"] == "assistant"]
        assert reply["usage"]["cost_micros"] is None and reply["usage"]["output_tokens"] == 1
        cost = (await client.get(f"/api/chats/{chat['id']}/cost")).json()
        assert (cost["cost_micros"], cost["unpriced_messages"], cost["output_tokens"]) == (0, 1, 1)


async def test_cost_and_usage_routes_refuse_other_users_and_bad_input(live: LiveReplica) -> None:
    admin_token = await live.token("root", admin=True)
    owner_token = await live.token("ann")
    other_token = await live.token("eve")
    async with (
        live.client(admin_token) as admin,
        live.client(owner_token) as owner,
        live.client(other_token) as other,
    ):
        chat = (await owner.post("/api/chats", json={"message": "hi"})).json()
        await waited(owner, chat["id"])
        assert (await owner.get(f"/api/chats/{chat['id']}/cost")).status_code == 200
        for client, path in [
            (other, f"/api/chats/{chat['id']}/cost"),
            (owner, "/api/chats/no-such-chat/cost"),
            (admin, "/api/users/no-such-user/usage"),
        ]:
            response = await client.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["kind"] == "not_found"
        assert (await other.get("/api/users/me/usage")).json()["messages"] == 0
        ann = (await owner.get("/api/users/me")).json()["id"]
        refused = await other.get(f"/api/users/{ann}/usage")
        assert refused.status_code == 403 and refused.json()["error"]["kind"] == "forbidden"
        for client, path in [(owner, "/api/users/me/usage"), (admin, f"/api/users/{ann}/usage")]:
            for since in ("yesterday", "2026-13-01T00:00:00Z", ""):
                bad = await client.get(path, params={"since": since})
                assert bad.status_code == 422, (path, since, bad.text)
                assert bad.json()["error"]["kind"] == "invalid_request"
        assert (
            await owner.get("/api/chats/x/cost", headers={"Authorization": ""})
        ).status_code == 401


async def test_model_config_prices_are_validated_and_round_trip(live: LiveReplica) -> None:
    async with live.client(await live.token("root", admin=True)) as admin:
        config_id = await priced_config(admin, "cheap", CHEAP)
        path = f"/api/chats/model-configs/{config_id}"
        assert (await admin.get(path)).json()["pricing"] == CHEAP
        for pricing in (
            {"input_price_per_million_tokens": -1},
            {"input_price_per_million_tokens": "abc"},
            {"input_price_per_million_tokens": "NaN"},
            {"input_price_per_million_tokens": 10**7},
            {"input_price_per_token": 1},
            ["3"],
        ):
            for response in (
                await admin.patch(path, json={"pricing": pricing}),
                await admin.post(
                    "/api/chats/model-configs",
                    json={"name": "x", "provider": "scripted", "model": "x", "pricing": pricing},
                ),
            ):
                assert response.status_code == 422, (pricing, response.text)
                assert response.json()["error"]["kind"] == "invalid_request"
        assert (await admin.get(path)).json()["pricing"] == CHEAP
        names = [
            c["name"] for c in (await admin.get("/api/chats/model-configs")).json()["model_configs"]
        ]
        assert "x" not in names
        patched = await admin.patch(path, json={"pricing": {"output_price_per_million_tokens": 4}})
        assert patched.json()["pricing"] == {"output_price_per_million_tokens": "4"}
        cleared = await admin.patch(path, json={"pricing": None})
        assert cleared.json()["pricing"] is None
