"""A chat on a real provider adapter (OpenAI's SDK against the replay server on loopback),
configured through the admin API with a stored, encrypted key."""

from __future__ import annotations

import pytest

from tests.providers.conftest import PROVIDER_KEY_ENVS
from tests.providers.replay import ReplayServer
from tests.service.conftest import LiveReplica
from tests.service.test_turns import wait_status


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_KEY_ENVS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _no_titles(live: LiveReplica) -> None:
    # The replay server answers requests in the order its fixtures were queued; these
    # tests queue one answer, for the turn, so no title request may take it.
    live.replica.worker.write_titles = False


async def test_a_chat_on_openai_with_a_stored_key(live: LiveReplica) -> None:
    replay = ReplayServer()
    await replay.start()
    try:
        replay.enqueue("openai_chat", "text")
        admin = await live.token("ops", admin=True)
        async with live.client(admin) as client:
            key = await client.post(
                "/api/chats/provider-keys",
                json={"name": "k", "provider": "openai", "api_key": "sk-stored-0000"},
            )
            assert key.status_code == 201, key.text
            config = await client.post(
                "/api/chats/model-configs",
                json={
                    "name": "gpt",
                    "provider": "openai-chat",
                    "model": "gpt-4o-mini",
                    "base_url": replay.url,
                    "provider_key_id": key.json()["id"],
                },
            )
            assert config.status_code == 201, config.text
            chat = (await client.post("/api/chats", json={"message": "hi", "model": "gpt"})).json()
            done = await wait_status(client, chat["id"], "waiting", "error")
            assert done["status"] == "waiting", done["last_error"]
            messages = (await client.get(f"/api/chats/{chat['id']}/messages")).json()["messages"]
            assert messages[-1]["role"] == "assistant"
            assert messages[-1]["parts"][-1]["text"]
        [request] = replay.requests
        assert request.headers.get("authorization") == "Bearer sk-stored-0000"
    finally:
        await replay.stop()


async def test_a_chat_on_anthropic_gets_the_models_prompt_hooks(live: LiveReplica) -> None:
    # The runner wraps the model to record attempts: the wrapper must keep its hooks.
    replay = ReplayServer()
    await replay.start()
    try:
        replay.enqueue("anthropic", "text")
        admin = await live.token("ops3", admin=True)
        async with live.client(admin) as client:
            key = await client.post(
                "/api/chats/provider-keys",
                json={"name": "a", "provider": "anthropic", "api_key": "sk-ant-stored"},
            )
            assert key.status_code == 201, key.text
            config = await client.post(
                "/api/chats/model-configs",
                json={
                    "name": "claude",
                    "provider": "anthropic",
                    "model": "claude-sonnet-5",
                    "base_url": replay.url,
                    "provider_key_id": key.json()["id"],
                },
            )
            assert config.status_code == 201, config.text
            chat = (
                await client.post("/api/chats", json={"message": "hi", "model": "claude"})
            ).json()
            done = await wait_status(client, chat["id"], "waiting", "error")
            assert done["status"] == "waiting", done["last_error"]
        [request] = replay.requests
        last_block = request.json()["messages"][-1]["content"][-1]
        assert last_block["cache_control"] == {"type": "ephemeral"}
    finally:
        await replay.stop()


async def test_a_model_without_a_key_ends_the_turn_as_missing_key(live: LiveReplica) -> None:
    admin = await live.token("ops2", admin=True)
    async with live.client(admin) as client:
        config = await client.post(
            "/api/chats/model-configs",
            json={"name": "claude", "provider": "anthropic", "model": "claude-sonnet-5"},
        )
        assert config.status_code == 201, config.text
        chat = (await client.post("/api/chats", json={"message": "hi", "model": "claude"})).json()
        failed = await wait_status(client, chat["id"], "error")
        assert failed["last_error"]["kind"] == "missing_key"
        assert failed["last_error"]["message"]
        unknown = await client.post(
            "/api/chats/model-configs",
            json={"name": "x", "provider": "nope", "model": "y"},
        )
        assert unknown.status_code == 422
