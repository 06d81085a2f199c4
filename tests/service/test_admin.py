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


async def test_model_config_options_the_provider_cannot_use_are_a_422_naming_the_field(
    live: LiveReplica,
) -> None:
    admin = await live.token("opts", admin=True)
    scripted = {"provider": "scripted", "model": "s"}
    bad = [
        ({"script": [{"error": {"code": 500}}]}, "options.script[0].error.code"),
        ({"script": [{"error": "boom"}]}, "options.script[0].error"),
        ({"script": [{"tool_calls": "echo"}]}, "options.script[0].tool_calls"),
        ({"script": [{"tool_calls": [["echo"]]}]}, "options.script[0].tool_calls[0]"),
        ({"script": [{"error": {"status_code": 200}}]}, "options.script[0].error.status_code"),
        ({"delta_delay": "fast"}, "options.delta_delay"),
        ({"delta_delay": True}, "options.delta_delay"),
        ({"script": {"text": "hi"}}, "options.script"),
        ({"temperature": 0.2}, "options.temperature"),
    ]
    async with live.client(admin) as client:
        for options, field in bad:
            created = await client.post(
                "/api/chats/model-configs", json={"name": "bad", **scripted, "options": options}
            )
            assert created.status_code == 422, (options, created.text)
            error = created.json()["error"]
            assert error["kind"] == "invalid_request"
            assert field in error["message"] and error["detail"].startswith(field), error
            loc = ["body", *field.replace("[", ".").replace("]", "").split(".")]
            assert error["fields"][0]["loc"] == loc
        no_url = await client.post(
            "/api/chats/model-configs",
            json={"name": "compat", "provider": "openai-compat", "model": "m"},
        )
        assert no_url.status_code == 422 and "base_url" in no_url.json()["error"]["detail"]
        names = [
            c["name"]
            for c in (await client.get("/api/chats/model-configs")).json()["model_configs"]
        ]
        assert "bad" not in names and "compat" not in names, "nothing half-written"

        good = {"delta_delay": 0, "script": [{"text": "hi", "tool_calls": [["t", {"a": 1}]]}]}
        created = await client.post(
            "/api/chats/model-configs", json={"name": "good", **scripted, "options": good}
        )
        assert created.status_code == 201, created.text
        # Other providers send their options as request fields: any JSON object.
        sdk = await client.post(
            "/api/chats/model-configs",
            json={
                "name": "gpt",
                "provider": "openai",
                "model": "gpt-5",
                "options": {"reasoning": {"effort": "low"}},
            },
        )
        assert sdk.status_code == 201, sdk.text

        path = f"/api/chats/model-configs/{created.json()['id']}"
        for patch in ({"options": {"script": [{"error": {"code": 1}}]}}, {"options": None}):
            refused = await client.patch(path, json=patch)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["fields"][0]["loc"][:2] == ["body", "options"]
        assert (await client.get(path)).json()["options"] == good, "unchanged"
        renamed = await client.patch(path, json={"name": "better"})
        assert renamed.status_code == 200 and renamed.json()["options"] == good
