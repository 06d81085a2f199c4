"""Child chats in the store, on both engines: the parent link, `wait_agent` answered by
whoever settles the last child, interrupt and delete over the tree, migration 0009."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic import command

from chatd.core.agents import WAIT_AGENT
from chatd.store import (
    ChatStatus,
    Database,
    Fence,
    InvalidRequest,
    NotFound,
    Store,
    TransitionRejected,
    current_revision,
    head_revision,
    new_id,
    upgrade,
)
from chatd.store._migrations import _config
from chatd.store._schema import chat_messages
from chatd.types import PersistedStep, ToolCallPart, ToolResultPart, ToolResultText
from tests.store.conftest import Backend, FakeClock, table_columns
from tests.store.helpers import acquire, dynamic_step, new_chat, text, text_step


def wait_step(call_id: str = "w1", **arguments: object) -> PersistedStep:
    return PersistedStep(content=[ToolCallPart(call_id, WAIT_AGENT, json.dumps(arguments))])


async def waiting_parent(store: Store, **arguments: object) -> tuple[str, str, list[str]]:
    """A parent with two running children, in requires_action on `wait_agent`."""
    owner, parent = await new_chat(store, "split the work")
    fence = await claim(store, parent.id)
    children = [
        (await store.create_chat(owner, text(f"part {i}"), parent_id=parent.id)).id for i in (1, 2)
    ]
    await store.commit_step(fence, "s1", wait_step(**arguments))
    chat = await store.enter_requires_action(fence)
    assert chat.status == ChatStatus.REQUIRES_ACTION
    return owner, parent.id, children


async def claim(store: Store, chat_id: str) -> Fence:
    """The chat's fence, claiming it first unless an earlier claim took it already."""
    chat = await store.get_chat(chat_id)
    if chat.status == ChatStatus.PENDING:
        return await acquire(store, chat_id)
    assert chat.runner_id is not None
    return Fence(chat_id, chat.runner_id, chat.lease_epoch)


async def finish(store: Store, chat_id: str, answer: str) -> None:
    """Run the chat's turn to its end with `answer`."""
    fence = await claim(store, chat_id)
    await store.commit_step(fence, new_id(), text_step(answer))
    await store.finish_turn(fence)


async def wait_result(store: Store, chat_id: str) -> dict[str, object]:
    history = await store.load_history(chat_id)
    [result] = [
        p
        for m in history.messages
        for p in m.content
        if isinstance(p, ToolResultPart) and p.tool_name == WAIT_AGENT
    ]
    assert isinstance(result.output, ToolResultText)
    decoded: dict[str, object] = json.loads(result.output.text)
    return decoded


async def test_the_last_child_to_finish_answers_the_parents_wait(store: Store) -> None:
    _, parent_id, (first, second) = await waiting_parent(store)
    assert [c.id for c in await store.list_children(parent_id)] == [first, second]
    assert (await store.get_chat(first)).parent_id == parent_id

    await finish(store, first, "one done")
    assert (await store.get_chat(parent_id)).status == ChatStatus.REQUIRES_ACTION
    await finish(store, second, "two done")

    parent = await store.get_chat(parent_id)
    assert parent.status == ChatStatus.PENDING and parent.requires_action_deadline_at is None
    result = await wait_result(store, parent_id)
    assert result["timed_out"] is False
    assert [(a["id"], a["status"], a["answer"]) for a in result["agents"]] == [  # type: ignore[attr-defined]
        (first, "waiting", "one done"),
        (second, "waiting", "two done"),
    ]


async def test_a_wait_for_settled_children_is_answered_when_it_starts(store: Store) -> None:
    owner, parent = await new_chat(store)
    child = await store.create_chat(owner, text("quick"), parent_id=parent.id)
    await finish(store, child.id, "quick answer")
    fence = await claim(store, parent.id)
    await store.commit_step(fence, "s1", wait_step(ids=[child.id, "nope"]))
    chat = await store.enter_requires_action(fence)
    assert chat.status == ChatStatus.PENDING
    agents = (await wait_result(store, parent.id))["agents"]
    assert agents == [
        {"id": child.id, "title": "quick", "status": "waiting", "answer": "quick answer"},
        {"id": "nope", "error": "No agent of this chat has this id."},
    ]


async def test_a_wait_past_its_timeout_reports_what_is_still_running(
    store: Store, clock: FakeClock
) -> None:
    _, parent_id, (first, _) = await waiting_parent(store, timeout="30s")
    await finish(store, first, "one done")
    assert await store.expire_requires_action() == []  # not due yet
    clock.advance(31)
    [expired] = await store.expire_requires_action()
    assert expired.status == ChatStatus.PENDING and expired.last_error is None
    result = await wait_result(store, parent_id)
    assert result["timed_out"] is True
    assert [a["status"] for a in result["agents"]] == ["waiting", "running"]  # type: ignore[attr-defined]


async def test_the_sweeper_answers_a_wait_no_commit_answered(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, parent_id, children = await waiting_parent(store)

    async def replica_died(chat: object) -> None:
        """The child's replica died between its commit and the parent's answer."""

    with monkeypatch.context() as patch:
        patch.setattr(store, "_child_committed", replica_died)
        for child in children:
            await finish(store, child, "done")
    assert (await store.get_chat(parent_id)).status == ChatStatus.REQUIRES_ACTION
    [resolved] = await store.resolve_stalled_waits()
    assert resolved.id == parent_id and resolved.status == ChatStatus.PENDING
    assert await store.resolve_stalled_waits() == []


async def test_the_client_answers_its_own_calls_and_the_agents_answer_the_wait(
    store: Store,
) -> None:
    owner, parent = await new_chat(store)
    child = await store.create_chat(owner, text("work"), parent_id=parent.id)
    fence = await claim(store, parent.id)
    step = PersistedStep(content=[*dynamic_step("c1").content, *wait_step("w1").content])
    await store.commit_step(fence, "s1", step)
    await store.enter_requires_action(fence)
    with pytest.raises(InvalidRequest, match="c1"):
        await store.complete_requires_action(
            parent.id, [ToolResultPart("w1", WAIT_AGENT, ToolResultText("{}"))]
        )
    chat = await store.complete_requires_action(
        parent.id, [ToolResultPart("c1", "browser", ToolResultText("clicked"))]
    )
    assert chat.status == ChatStatus.REQUIRES_ACTION  # the agent is still working
    with pytest.raises(TransitionRejected) as refused:
        await store.complete_requires_action(parent.id, [])
    assert "waiting for its agents" in refused.value.message
    await finish(store, child.id, "worked")
    assert (await store.get_chat(parent.id)).status == ChatStatus.PENDING


async def test_interrupting_the_parent_interrupts_every_busy_child(store: Store) -> None:
    owner, parent_id, (first, second) = await waiting_parent(store)
    await claim(store, first)  # the claim takes both: two running children
    parent = await store.interrupt(parent_id)
    assert parent.status == ChatStatus.WAITING
    for child in (first, second):
        assert (await store.get_chat(child)).status == ChatStatus.INTERRUPTING

    # An idle parent whose children still work: the interrupt reaches them too.
    idle = await store.create_chat(owner, text("again"), parent_id=parent_id)
    assert (await store.interrupt(parent_id)).status == ChatStatus.WAITING
    assert (await store.get_chat(idle.id)).status == ChatStatus.WAITING
    with pytest.raises(TransitionRejected):
        await store.interrupt(parent_id)  # nothing busy left: the usual refusal


async def test_deleting_the_parent_deletes_settled_children_and_detaches_busy_ones(
    store: Store,
) -> None:
    owner, parent = await new_chat(store)
    settled = await store.create_chat(owner, text("one"), parent_id=parent.id)
    busy = await store.create_chat(owner, text("two"), parent_id=parent.id)
    await finish(store, settled.id, "ok")
    await finish(store, parent.id, "spawned")
    await claim(store, busy.id)
    await store.delete_chat(parent.id)
    with pytest.raises(NotFound):
        await store.get_chat(parent.id)
    with pytest.raises(NotFound):
        await store.get_chat(settled.id)
    detached = await store.get_chat(busy.id)
    assert detached.parent_id is None and detached.status == ChatStatus.INTERRUPTING


async def test_children_are_depth_one_and_the_owners_own(store: Store) -> None:
    owner, parent = await new_chat(store)
    child = await store.create_chat(owner, text("c"), parent_id=parent.id)
    with pytest.raises(InvalidRequest, match="depth 1"):
        await store.create_chat(owner, text("grandchild"), parent_id=child.id)
    stranger = await store.create_user("stranger")
    with pytest.raises(NotFound):
        await store.create_chat(stranger.id, text("x"), parent_id=parent.id)
    with pytest.raises(NotFound):
        await store.create_chat(owner, text("x"), parent_id="missing")


async def message_count(db: Database, chat_id: str) -> int:
    async with db.read() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(chat_messages.c.chat_id == chat_id)
        )
    return int(count or 0)


async def test_migration_0009_keeps_every_message_both_ways(backend: Backend) -> None:
    db = Database(await backend.new_url())
    try:
        store = Store(db)
        owner, chat = await new_chat(store, "kept")
        assert await message_count(db, chat.id) == 1
        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0008"))
        assert "parent_id" not in await table_columns(db, "chats")
        assert await message_count(db, chat.id) == 1
        await upgrade(db)
        assert await current_revision(db) == head_revision()
        assert "parent_id" in await table_columns(db, "chats")
        assert (await store.get_chat(chat.id)).parent_id is None
        assert await message_count(db, chat.id) == 1  # nothing cascaded
        child = await store.create_chat(owner, text("c"), parent_id=chat.id)
        assert (await store.get_chat(child.id)).parent_id == chat.id
    finally:
        await db.dispose()
