"""Admin routes: model configs and provider keys (admin tokens only, keys never returned)."""

from __future__ import annotations

from tests.service.conftest import LiveReplica


async def test_model_configs_and_provider_keys_round_trip(live: LiveReplica) -> None:
    admin = await live.token("root", admin=True)
    async with live.client(admin) as client:
        key = await client.post(
            "/api/chats/provider-keys",
            json={"name": "openai-main", "provider": "openai", "api_key": "sk-test-abcd1234"},
        )
        assert key.status_code == 201, key.text
        assert key.json()["last4"] == "1234"
        assert "sk-test" not in key.text
        listed = (await client.get("/api/chats/provider-keys")).json()["provider_keys"]
        assert [k["name"] for k in listed] == ["openai-main"] and "sk-test" not in str(listed)

        config = await client.post(
            "/api/chats/model-configs",
            json={
                "name": "gpt",
                "provider": "openai",
                "model": "gpt-5",
                "provider_key_id": key.json()["id"],
            },
        )
        assert config.status_code == 201, config.text
        config_id = config.json()["id"]
        clash = await client.post(
            "/api/chats/model-configs",
            json={"name": "gpt", "provider": "openai", "model": "gpt-5"},
        )
        assert clash.status_code == 409 and clash.json()["error"]["kind"] == "conflict"
        in_use = await client.delete(f"/api/chats/provider-keys/{key.json()['id']}")
        assert in_use.status_code == 409

        patched = await client.patch(
            f"/api/chats/model-configs/{config_id}", json={"enabled": False}
        )
        assert patched.status_code == 200 and patched.json()["enabled"] is False
        models = (await client.get("/api/chats/models")).json()["models"]
        assert "gpt" not in [m["name"] for m in models]  # disabled configs are not offered
        assert (await client.delete(f"/api/chats/model-configs/{config_id}")).status_code == 204
        assert (
            await client.delete(f"/api/chats/provider-keys/{key.json()['id']}")
        ).status_code == 204
        missing = await client.get(f"/api/chats/model-configs/{config_id}")
        assert missing.status_code == 404


async def test_admin_routes_refuse_ordinary_users(live: LiveReplica) -> None:
    user = await live.token("plain")
    async with live.client(user) as client:
        for method, path in [
            ("GET", "/api/chats/model-configs"),
            ("POST", "/api/chats/provider-keys"),
            ("GET", "/api/chats/provider-keys"),
        ]:
            response = await client.request(method, path, json={} if method == "POST" else None)
            assert response.status_code in (403, 422), (path, response.text)
            if method == "GET":
                assert response.status_code == 403
                assert response.json()["error"]["kind"] == "forbidden"
