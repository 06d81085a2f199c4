"""NUL (U+0000) in what users write round-trips byte for byte on both engines.

PostgreSQL refuses NUL in text and `\\u0000` in jsonb; the store encodes it there
(`chatd.store._nul`), and the two private-use characters that code uses must come
back unchanged too.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from chatd.store import NotFound, Store, StreamEvent, new_id
from chatd.store._nul import decode_json, decode_text, encode_json, encode_text
from chatd.store._schema import chats
from chatd.types import TextPart
from tests.store.helpers import acquire, running_chat, send, text, text_step

# NUL, the code's two private-use characters alone and in the pairs it stores, and a
# literal backslash before "u0000" (JSON text `\\u0000`, not a NUL).
AWKWARD = ["\x00", "a\x00b\x00", "\ue000", "\ue001", "\ue001\ue000", "\ue000\x00\ue001", "\\u0000"]
TEXT = "before \x00 after \ue000\ue001 \\u0000 \x00"


@pytest.mark.parametrize("value", AWKWARD)
def test_the_postgres_code_is_lossless_and_keeps_nul_length(value: str) -> None:
    stored = encode_text(value)
    assert "\x00" not in stored
    assert decode_text(stored) == value
    document = {value: [value, {"k": value}]}
    assert "\\u0000" not in encode_json(document).replace("\\\\", "")
    assert decode_json(encode_json(document)) == document
    assert len(encode_text("\x00" * 256)) == 256


async def test_message_title_prompt_queue_and_edit_keep_nul(store: Store) -> None:
    user = await store.create_user("nul")
    chat = await store.create_chat(
        user.id,
        text(TEXT),
        title="title \x00\ue000",
        system_prompt="prompt \x00",
        tool_config={"dynamic": [{"name": "t", "description": "d\x00", "input_schema": {}}]},
        request_key="key\x00",
    )
    again = await store.get_chat(chat.id, owner_id=user.id)
    assert (again.title, again.system_prompt) == ("title \x00\ue000", "prompt \x00")
    assert again.tool_config["dynamic"][0]["description"] == "d\x00"
    [message] = await store.list_messages(chat.id)
    assert message.parts == [TextPart(TEXT)]
    renamed = await store.update_title(chat.id, "\x00" * 256)
    assert renamed.title == "\x00" * 256

    lease = await acquire(store, chat.id)
    await send(store, chat.id, "queued \x00")
    [queued] = await store.list_queued_messages(chat.id)
    assert queued.parts == [TextPart("queued \x00")]
    await store.commit_step(lease, new_id(), text_step("reply \x00"))
    await store.finish_turn(lease)
    edited = await store.edit_message(chat.id, message.id, text("edited \x00\ue000"))
    assert edited.message is not None and edited.message.parts == [TextPart("edited \x00\ue000")]
    texts = [m.parts for m in await store.list_messages(chat.id)]
    assert texts[0] == [TextPart("edited \x00\ue000")]


async def test_lookups_with_nul_find_nothing_or_the_exact_match(store: Store) -> None:
    user = await store.create_user("nul")
    chat = await store.create_chat(user.id, text("hi"), title="x\x00y")
    await store.create_chat(user.id, text("hi"), title="xy")
    with pytest.raises(NotFound):
        await store.get_chat(chat.id + "\x00")
    with pytest.raises(NotFound):
        await store.get_model_config("\x00")
    # SQLite's LIKE ends its pattern at a NUL (so it matches more); neither engine fails.
    page = await store.list_chats(user.id, title_contains="\x00")
    assert chat.id in [c.id for c in page.items]
    config = await store.create_model_config("m\x00", "scripted", "model\x00")
    assert (await store.get_model_config(config.id)).name == "m\x00"
    key = await store.create_provider_key("k\x00", "openai", "sk-secret")
    assert [k.name for k in await store.list_provider_keys()] == [key.name]


async def test_stream_events_keep_nul(store: Store) -> None:
    chat, lease = await running_chat(store)
    data = {"text": TEXT, TEXT: 1}
    await store.append_events_batch(
        [(lease, [StreamEvent(seq=1, type="message_part", data=data)], {"s": "\x00"})]
    )
    await store.commit_step(
        lease, new_id(), text_step(), events=[StreamEvent(seq=2, type="x", data=data)]
    )
    assert [e.data for e in await store.read_events(chat.id)] == [data, data]
    async with store.db.read() as conn:
        emitted = (await conn.execute(sa.select(chats.c.emitted_state))).scalar_one()
    assert emitted == {"s": "\x00"}
