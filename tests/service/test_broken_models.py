"""A chat whose model cannot be built, or whose turn fails inside chatd, ends in `error`.

Never `running` with no error, re-acquired every lease TTL: each turn below ends in
the acquisition that claimed it (lease epoch 1), with the kind and message a
provider error would carry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from chatd.store import SecretBox, Store
from tests.service.conftest import SSE, LiveReplica, running_replica, turn_done


async def _turn_error(live: LiveReplica, client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Start a chat, read its stream to the turn's end; its last error, checked."""
    created = await client.post("/api/chats", json=body)
    assert created.status_code == 201, created.text
    chat_id = created.json()["id"]
    events = await SSE(client, f"/api/chats/{chat_id}/stream").read_until(turn_done)
    assert events[-1][1] == "status" and events[-1][2]["status"] == "error"
    chat = (await client.get(f"/api/chats/{chat_id}")).json()
    assert chat["status"] == "error"
    stored = await live.store.get_chat(chat_id)
    assert stored.lease_epoch == 1, "ended in the acquisition that claimed it"
    assert stored.runner_id is None
    error: dict[str, Any] = chat["last_error"]
    assert error["message"] and not error["retryable"]
    return error


async def test_a_scripted_config_with_bad_options_ends_the_turn_in_a_config_error(
    live: LiveReplica,
) -> None:
    # Stored before options were validated (or written by an older chatd).
    bad_error = await live.scripted_model("bad-error", script=[{"error": {"code": 500}}])
    bad_calls = await live.scripted_model("bad-calls", script=[{"tool_calls": "echo"}])
    token = await live.token("ann")
    async with live.client(token) as client:
        error = await _turn_error(live, client, {"message": "hi", "model": bad_error})
        assert error["kind"] == "config" and error["provider"] == "scripted"
        assert "'bad-error'" in error["message"]
        assert "options.script[0].error.code" in error["message"]
        error = await _turn_error(live, client, {"message": "hi", "model": bad_calls})
        assert error["kind"] == "config"
        assert "options.script[0].tool_calls" in error["message"]


async def test_a_stored_key_the_secret_key_cannot_decrypt_ends_the_turn_as_missing_key(
    live: LiveReplica,
) -> None:
    key = await live.store.create_provider_key("openai-main", "openai", "sk-test-abcd1234")
    await live.store.create_model_config(
        "gpt", "openai", "gpt-5", provider_key_id=key.id, is_default=False
    )
    live.store.secrets = SecretBox(Fernet.generate_key())  # CHATD_SECRET_KEY changed
    token = await live.token("bea")
    async with live.client(token) as client:
        error = await _turn_error(live, client, {"message": "hi", "model": "gpt"})
    assert error["kind"] == "missing_key" and error["provider"] == "openai"
    assert "cannot be decrypted" in error["message"] and "'gpt'" in error["message"]
    assert "sk-test" not in str(error)


async def test_a_failure_inside_chatd_outside_the_model_call_ends_the_turn_as_internal(
    live: LiveReplica,
) -> None:
    def broken_tools(_chat: Any) -> list[Any]:
        raise RuntimeError("the embedding application's tool hook broke")

    live.replica.worker.server_tools = broken_tools
    token = await live.token("cat")
    async with live.client(token) as client:
        error = await _turn_error(live, client, {"message": "hi"})
        assert error["kind"] == "internal"
        assert "server log" in error["message"]
        assert "hook broke" not in str(error), "internal text stays in the log"
        # The chat is usable again once the cause is gone.
        live.replica.worker.server_tools = None
        chat = (await client.get("/api/chats")).json()["chats"][0]
        sent = await client.post(f"/api/chats/{chat['id']}/messages", json={"message": "again"})
        assert sent.status_code == 200, sent.text
        stream = SSE(client, f"/api/chats/{chat['id']}/stream", last_event_id=chat["last_seq"])
        events = await stream.read_until(turn_done)
        assert events[-1][2]["status"] == "waiting"


async def test_the_server_warns_at_start_about_each_key_it_cannot_decrypt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    url = f"sqlite+aiosqlite:///{tmp_path}/chatd.db"
    store = await Store.open(url, data_dir=tmp_path, secret_key=old)
    sealed = await store.create_provider_key("old-openai", "openai", "sk-old-secret-1111")
    await store.close()
    store = await Store.open(url, data_dir=tmp_path, secret_key=new)
    await store.create_provider_key("new-claude", "anthropic", "sk-new-secret-2222")
    await store.close()
    with caplog.at_level(logging.WARNING, logger="chatd"):
        async with running_replica(tmp_path, secret_key=new.decode()):
            warnings = [r.getMessage() for r in caplog.records if r.name == "chatd"]
    [line] = [w for w in warnings if "cannot be decrypted" in w]
    assert "'old-openai'" in line and "openai" in line and sealed.id in line
    assert "new-claude" not in str(warnings), "a readable key is not reported"
    assert "sk-old" not in line and "1111" not in line, "never the secret"
