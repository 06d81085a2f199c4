"""`Store.chat_details`: what a chat's full resource needs in one connection, on both engines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from chatd.store import Chat, ChatDetails, ModelConfig, NotFound, Store, new_id
from tests.store.helpers import acquire, new_chat, requires_action_chat, text, text_step
from tests.store.states import ALL_STATES, make_state

NO_USAGE = {
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "reasoning_tokens": 0,
    "cache_creation_tokens": 0,
    "cache_read_tokens": 0,
    "cost_micros": None,
}


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements any engine runs inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def separate_reads(store: Store, chat: Chat) -> ChatDetails:
    """What the API read before `chat_details`, one read (and connection) at a time."""
    config: ModelConfig | None = None
    with contextlib.suppress(NotFound):
        config = await store.get_model_config(chat.model_config_id)
    return ChatDetails(
        queue=await store.list_queued_messages(chat.id) if chat.queue_length else [],
        model_config=config,
        messages=(await store.list_messages(chat.id) if chat.requires_action_deadline_at else []),
        usage=NO_USAGE if chat.snapshot_version == 1 else await store.usage_totals(chat.id),
    )


@pytest.mark.parametrize("state", ALL_STATES)
async def test_chat_details_equal_the_separate_reads_in_every_state(
    store: Store, state: str
) -> None:
    chat, _ = await make_state(store, state)
    details = await store.chat_details(chat)
    assert details == await separate_reads(store, chat)
    assert details.model_config is not None and details.model_config.is_default


async def test_chat_details_read_everything_in_at_most_three_statements(store: Store) -> None:
    chat, _ = await requires_action_chat(store, queued=2)
    await store.get_chat(chat.id)  # the read engine has connected
    with statements() as seen:
        details = await store.chat_details(chat)
    # model config and usage in one statement, then the queue, then the messages
    assert len(seen) == 3, seen
    assert [q.parts for q in details.queue] == [text("queued 0"), text("queued 1")]
    assert details.messages == await store.list_messages(chat.id)
    assert details.usage == await store.usage_totals(chat.id)
    assert details.model_config == await store.get_model_config()


async def test_chat_details_skip_what_the_chat_row_says_is_empty(store: Store) -> None:
    user_id, default_chat = await new_chat(store)
    config = await store.create_model_config("other", "scripted", "echo")
    chat = await store.create_chat(user_id, text("hi"), model_config_id=config.id)
    await store.get_chat(chat.id)
    with statements() as seen:
        # New chats: no queue, no deadline, no step to add up; the caller knows the
        # config of the second, so nothing at all is read for it.
        fresh = await store.chat_details(default_chat)
        known = await store.chat_details(chat, model_config=config)
    assert len(seen) == 1, seen
    assert fresh == ChatDetails(
        queue=[], model_config=await store.get_model_config(), messages=[], usage=NO_USAGE
    )
    assert known == ChatDetails(queue=[], model_config=config, messages=[], usage=NO_USAGE)
    # A config that is not the chat's is no substitute for reading the chat's.
    other = await store.chat_details(default_chat, model_config=config)
    assert other.model_config == await store.get_model_config()


async def test_chat_details_of_a_chat_whose_config_is_gone_still_add_up_usage(
    store: Store,
) -> None:
    user_id, _ = await new_chat(store)
    config = await store.create_model_config("gone", "scripted", "echo")
    chat = await store.create_chat(user_id, text("hi"), model_config_id=config.id)
    chat = await store.commit_step(await acquire(store, chat.id), new_id(), text_step())
    await store.delete_model_config(config.id)
    details = await store.chat_details(chat)  # the snapshot still names the config
    assert details.model_config is None
    assert details.usage == await store.usage_totals(chat.id)
    assert details.usage["input_tokens"] == 3 and details.usage["output_tokens"] == 2
