"""The transitions the API calls, state by state (spec §2.4), on both engines."""

from __future__ import annotations

import pytest

from chatd.store import (
    BusyBehavior,
    ChatStatus,
    InvalidRequest,
    NotFound,
    RejectionKind,
    StaleFence,
    Store,
    TransitionRejected,
    new_id,
)
from chatd.types import Role, TextPart, ToolResultPart, ToolResultText
from tests.store.helpers import (
    InvariantChecker,
    acquire,
    new_chat,
    requires_action_chat,
    running_chat,
    send,
    text,
    text_step,
    waiting_chat,
)
from tests.store.states import ALL_STATES, make_state

# state → (after send with busy_behavior=queue, after interrupt, where `m` lands)
SEND_TABLE = {
    "W": ("P0", "P0"),
    "E0": ("P0", "P0"),
    "E1": ("P1", "P1"),
    "P0": ("P1", "P0"),
    "P1": ("P1", "P1"),
    "R0": ("R1", "I1"),
    "R1": ("R1", "I1"),
    "I0": ("I1", "I1"),
    "I1": ("I1", "I1"),
    "A0": ("A1", "P0"),
    "A1": ("A1", "P1"),
}


async def test_create_chat_lands_pending_with_the_first_message(store: Store) -> None:
    user = await store.create_user("alice")
    chat = await store.create_chat(user.id, text("hello there"), system_prompt="be brief")
    assert chat.state == "P0"
    assert (chat.snapshot_version, chat.history_version, chat.queue_version) == (1, 1, 0)
    assert chat.title == "hello there" and chat.title_source == "default"
    visible = await store.list_messages(chat.id)
    assert [m.role for m in visible] == [Role.USER]
    history = await store.load_history(chat.id)
    assert [m.role for m in history.messages] == [Role.SYSTEM, Role.USER]
    await InvariantChecker(store, chat.id).check()


async def test_create_chat_with_the_same_idempotency_key_returns_the_first_chat(
    store: Store,
) -> None:
    user = await store.create_user("alice")
    first = await store.create_chat(user.id, text("hi"), request_key="k1")
    again = await store.create_chat(user.id, text("hi"), request_key="k1")
    assert again.id == first.id
    assert len((await store.list_chats(user.id)).items) == 1


@pytest.mark.parametrize("interrupt", [False, True], ids=["queue", "interrupt"])
@pytest.mark.parametrize("state", list(SEND_TABLE))
async def test_send_message_follows_the_busy_behavior_table(
    store: Store, state: str, interrupt: bool
) -> None:
    chat, _ = await make_state(store, state)
    checker = InvariantChecker(store, chat.id)
    await checker.check()
    behavior = BusyBehavior.INTERRUPT if interrupt else BusyBehavior.QUEUE
    result = await store.send_message(chat.id, text("new"), busy_behavior=behavior)
    assert result.chat.state == SEND_TABLE[state][interrupt]
    assert result.chat.snapshot_version > chat.snapshot_version
    await checker.check()
    queue = await store.list_queued_messages(chat.id)
    history = await store.list_messages(chat.id)
    in_history = [m for m in history if m.parts == text("new")]
    in_queue = [q for q in queue if q.parts == text("new")]
    assert len(in_history) + len(in_queue) == 1
    if state[0] in "RI" and interrupt:
        assert queue[0].parts == text("new")  # the interrupting message runs next
    if state == "A0" and interrupt:
        results = [p for m in history for p in m.parts if isinstance(p, ToolResultPart)]
        assert {r.tool_call_id for r in results} == {"dyn_1", "dyn_2"}
        assert all(r.is_error for r in results)


@pytest.mark.parametrize("state", ["XW", "XE0", "XE1"])
async def test_archived_chats_refuse_messages_with_409(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    with pytest.raises(TransitionRejected) as caught:
        await send(store, chat.id, "nope")
    body = caught.value.to_dict()
    assert body["kind"] == "invalid_state"
    assert body["archived"] is True
    assert body["status"] == str(chat.status)
    assert body["snapshot_version"] == chat.snapshot_version
    assert body["message"] and body["detail"].endswith(state)


async def test_a_full_queue_refuses_with_queue_full(store: Store) -> None:
    chat, _ = await running_chat(store, queued=20)
    with pytest.raises(TransitionRejected) as caught:
        await send(store, chat.id, "one too many")
    assert caught.value.kind == RejectionKind.QUEUE_FULL
    assert len(await store.list_queued_messages(chat.id)) == 20


async def test_send_with_a_repeated_idempotency_key_changes_nothing(store: Store) -> None:
    chat, _ = await running_chat(store)
    first = await store.send_message(chat.id, text("once"), request_key="r1")
    again = await store.send_message(chat.id, text("once"), request_key="r1")
    assert again.replayed and again.queued is not None and first.queued is not None
    assert again.queued.id == first.queued.id
    assert again.chat.snapshot_version == first.chat.snapshot_version
    assert len(await store.list_queued_messages(chat.id)) == 1


INTERRUPT_TABLE = {
    "R0": "I0",
    "R1": "I1",
    "I0": "I0",
    "I1": "I1",
    "P0": "W",
    "P1": "P0",
    "A0": "W",
    "A1": "P0",
}


@pytest.mark.parametrize("state", ALL_STATES)
async def test_interrupt_follows_the_table(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    checker = InvariantChecker(store, chat.id)
    await checker.check()
    if state not in INTERRUPT_TABLE:
        with pytest.raises(TransitionRejected):
            await store.interrupt(chat.id)
        assert (await store.get_chat(chat.id)).snapshot_version == chat.snapshot_version
        return
    after = await store.interrupt(chat.id)
    assert after.state == INTERRUPT_TABLE[state]
    if state.startswith("I"):  # idempotent: nothing changes
        assert after.snapshot_version == chat.snapshot_version
    await checker.check()


@pytest.mark.parametrize("state", [s for s in ALL_STATES if not s.startswith("X")])
async def test_edit_message_truncates_and_lands_pending(store: Store, state: str) -> None:
    chat, fence = await make_state(store, state)
    checker = InvariantChecker(store, chat.id)
    await checker.check()
    first = (await store.list_messages(chat.id))[0]
    result = await store.edit_message(chat.id, first.id, text("edited"))
    assert result.chat.state == "P0"
    assert result.chat.history_reset_version == result.chat.snapshot_version
    assert result.chat.last_error is None and result.chat.runner_id is None
    visible = await store.list_messages(chat.id)
    assert [m.parts for m in visible] == [text("edited")]
    every = await store.list_messages(chat.id, include_hidden=True)
    assert [m.deleted for m in every] == [True] * (len(every) - 1) + [False]
    await checker.check()
    if fence is not None:  # the old runner's next write is refused
        with pytest.raises(StaleFence):
            await store.commit_step(fence, new_id(), text_step())


async def test_edit_message_refuses_non_user_messages_and_unknown_ids(store: Store) -> None:
    chat = await waiting_chat(store)
    assistant = next(m for m in await store.list_messages(chat.id) if m.role == Role.ASSISTANT)
    with pytest.raises(InvalidRequest):
        await store.edit_message(chat.id, assistant.id, text("x"))
    with pytest.raises(NotFound):
        await store.edit_message(chat.id, new_id(), text("x"))
    with pytest.raises(NotFound):
        await store.send_message(new_id(), text("x"))


@pytest.mark.parametrize("state", ["E1", "P1", "R1", "I1", "A1"])
async def test_delete_queued_message_empties_the_queue(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    [queued] = await store.list_queued_messages(chat.id)
    after = await store.delete_queued_message(chat.id, queued.id)
    assert after.state == state[0] + "0"
    assert after.queue_version == after.snapshot_version
    with pytest.raises(NotFound):
        await store.delete_queued_message(chat.id, queued.id)
    await InvariantChecker(store, chat.id).check()


PROMOTE_TABLE = {"E1": "P0", "P1": "P0", "R1": "I1", "I1": "I1", "A1": "P0"}


@pytest.mark.parametrize("state", list(PROMOTE_TABLE))
async def test_promote_queued_message_makes_it_next(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    await send(store, chat.id, "second")
    queue = await store.list_queued_messages(chat.id)
    second = queue[-1]
    after = await store.promote_queued_message(chat.id, second.id)
    letter = PROMOTE_TABLE[state][0]
    left = len(queue) if letter == "I" else len(queue) - 1
    assert after.state == f"{letter}{1 if left else 0}"
    if after.status == ChatStatus.INTERRUPTING:
        assert (await store.list_queued_messages(chat.id))[0].id == second.id
    else:
        assert (await store.list_messages(chat.id))[-1].parts == text("second")
        assert after.last_error is None
    await InvariantChecker(store, chat.id).check()


async def test_complete_requires_action_needs_exactly_the_pending_results(store: Store) -> None:
    chat, _ = await requires_action_chat(store)

    def result(call_id: str) -> ToolResultPart:
        return ToolResultPart(call_id, "", ToolResultText("done"))

    for wrong in ([result("dyn_1")], [result("dyn_1"), result("dyn_1")], [result("other")]):
        with pytest.raises(InvalidRequest) as caught:
            await store.complete_requires_action(chat.id, wrong)
        assert caught.value.kind == "invalid_tool_results"
    after = await store.complete_requires_action(chat.id, [result("dyn_2"), result("dyn_1")])
    assert after.state == "P0" and after.requires_action_deadline_at is None
    last = (await store.list_messages(chat.id))[-1]
    assert last.role == Role.TOOL
    assert [p.tool_call_id for p in last.parts if isinstance(p, ToolResultPart)] == [
        "dyn_1",
        "dyn_2",
    ]
    assert all(isinstance(p, ToolResultPart) and p.tool_name == "browser" for p in last.parts)
    with pytest.raises(TransitionRejected):
        await store.complete_requires_action(chat.id, [result("dyn_1"), result("dyn_2")])
    await InvariantChecker(store, chat.id).check()


@pytest.mark.parametrize("state", ["W", "E0", "E1"])
async def test_request_compaction_starts_a_turn(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    after = await store.request_compaction(chat.id)
    assert after.state == "P" + ("1" if state == "E1" else "0")
    assert after.compaction_requested_at is not None and after.last_error is None
    assert after.history_version == after.snapshot_version
    await InvariantChecker(store, chat.id).check()


async def test_request_compaction_with_nothing_new_is_refused(store: Store) -> None:
    chat = await waiting_chat(store)
    await store.clear_context(chat.id)
    with pytest.raises(TransitionRejected) as caught:
        await store.request_compaction(chat.id)
    assert caught.value.kind == RejectionKind.NOTHING_TO_COMPACT


@pytest.mark.parametrize("state", ["W", "E0"])
async def test_clear_context_hides_history_from_the_model(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    after = await store.clear_context(chat.id)
    assert after.state == "W" and after.last_error is None
    assert after.history_reset_version == after.snapshot_version
    history = await store.load_history(chat.id)
    assert [m.role for m in history.messages] == [Role.SYSTEM]  # the clear marker only
    visible = await store.list_messages(chat.id)
    assert [m.role for m in visible] == [Role.ASSISTANT, Role.TOOL]  # chat_cleared note
    with pytest.raises(TransitionRejected) as caught:
        await store.clear_context(chat.id)
    assert caught.value.kind == RejectionKind.NOTHING_TO_CLEAR
    await send(store, chat.id, "fresh start")
    history = await store.load_history(chat.id)
    assert history.messages[-1].content == text("fresh start")
    await InvariantChecker(store, chat.id).check()


@pytest.mark.parametrize("state", ["E1", "P0", "R0", "A0"])
async def test_clear_context_refuses_busy_or_queued_chats(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    with pytest.raises(TransitionRejected):
        await store.clear_context(chat.id)


@pytest.mark.parametrize("state", ALL_STATES)
async def test_archive_only_idle_chats_and_back(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    if state in ("W", "E0", "E1"):
        archived = await store.set_archived(chat.id, True)
        assert archived.state == "X" + state
        restored = await store.set_archived(chat.id, False)
        assert restored.state == state
        assert restored.snapshot_version == chat.snapshot_version + 2
    elif state.startswith("X"):
        with pytest.raises(TransitionRejected):
            await store.set_archived(chat.id, True)
        assert (await store.set_archived(chat.id, False)).state == state[1:]
    else:
        with pytest.raises(TransitionRejected):
            await store.set_archived(chat.id, True)
        with pytest.raises(TransitionRejected):
            await store.set_archived(chat.id, False)


@pytest.mark.parametrize("state", ["R1", "XE1", "A0"])
async def test_update_title_works_everywhere_without_a_version(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    after = await store.update_title(chat.id, "Renamed")
    assert after.title == "Renamed" and after.title_source == "user"
    assert after.snapshot_version == chat.snapshot_version


@pytest.mark.parametrize("state", ALL_STATES)
async def test_delete_chat_only_when_idle(store: Store, state: str) -> None:
    chat, _ = await make_state(store, state)
    if state.removeprefix("X") in ("W", "E0", "E1"):
        await store.delete_chat(chat.id)
        with pytest.raises(NotFound):
            await store.get_chat(chat.id)
        assert await store.list_messages(chat.id, include_hidden=True) == []
    else:
        with pytest.raises(TransitionRejected):
            await store.delete_chat(chat.id)


async def test_a_queued_message_keeps_its_model_when_promoted(store: Store) -> None:
    config = await store.create_model_config("other", "scripted", "other")
    chat, fence = await running_chat(store)
    await store.send_message(chat.id, text("with other model"), model_config_id=config.id)
    after = await store.finish_turn(fence)
    assert after.state == "P0" and after.model_config_id == config.id
    promoted = (await store.list_messages(chat.id))[-1]
    assert promoted.model_config_id == config.id and promoted.parts == text("with other model")


async def test_owner_scoped_get_hides_other_users_chats(store: Store) -> None:
    owner, chat = await new_chat(store)
    other = await store.create_user("mallory")
    assert (await store.get_chat(chat.id, owner_id=owner)).id == chat.id
    with pytest.raises(NotFound):
        await store.get_chat(chat.id, owner_id=other.id)


async def test_messages_sent_by_acquired_runner_keep_positions_dense(store: Store) -> None:
    _, chat = await new_chat(store)
    fence = await acquire(store, chat.id)
    for index in range(3):
        await store.commit_step(fence, new_id(), text_step(f"step {index}"))
    positions = [m.position for m in await store.list_messages(chat.id)]
    assert positions == [1, 2, 3, 4]
    assert (await store.list_messages(chat.id, after_position=2, limit=1))[0].parts == [
        TextPart("step 1")
    ]
