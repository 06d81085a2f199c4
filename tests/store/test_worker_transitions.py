"""The transitions a worker applies (spec §2.5), fencing, leases, and the reads it relies on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chatd.errors import ClassifiedError
from chatd.loop import PersistedStep
from chatd.store import (
    CANCELLED_TOOL_RESULT,
    ChatIsInterrupting,
    ChatStatus,
    StaleFence,
    Store,
    StoreError,
    StreamEvent,
    TransitionRejected,
    new_id,
)
from chatd.store.testing import FakeClock
from chatd.types import (
    Role,
    SourcePart,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
    Usage,
)
from tests.store.helpers import (
    InvariantChecker,
    acquire,
    dynamic_step,
    fence,
    new_chat,
    requires_action_chat,
    running_chat,
    send,
    text,
    text_step,
    tool_step,
)


async def test_acquire_claims_a_pending_chat_once(store: Store) -> None:
    _, chat = await new_chat(store)
    [lease] = await store.acquire_pending_chats("w1")
    assert lease.chat.state == "R0" and lease.chat.worker_id == "w1"
    assert lease.lease_epoch == 1 and lease.first_seq == 1
    assert lease.chat.seq_reserved == store.config.seq_block
    assert await store.acquire_pending_chats("w2") == []
    assert await store.renew_leases("w1", [lease.runner_id]) == {lease.runner_id}
    await InvariantChecker(store, chat.id).check()


async def test_acquire_respects_the_limit_and_skips_archived_chats(store: Store) -> None:
    for _ in range(3):
        await new_chat(store)
    assert len(await store.acquire_pending_chats("w1", limit=2)) == 2
    assert len(await store.acquire_pending_chats("w1", limit=0)) == 0
    assert len(await store.acquire_pending_chats("w1", limit=5)) == 1


@pytest.mark.parametrize("interrupting", [False, True])
async def test_an_expired_lease_is_taken_over_and_fences_the_old_runner(
    store: Store, clock: FakeClock, interrupting: bool
) -> None:
    chat, old = await running_chat(store)
    if interrupting:
        await store.interrupt(chat.id)
    assert await store.acquire_pending_chats("w2") == []  # lease still fresh
    clock.advance(store.config.lease_ttl + 1)
    [lease] = await store.acquire_pending_chats("w2")
    assert lease.chat.status == (ChatStatus.INTERRUPTING if interrupting else ChatStatus.RUNNING)
    assert lease.lease_epoch == 2 and lease.runner_id != old.runner_id
    assert lease.first_seq == store.config.seq_block + 1  # above anything the old owner used
    with pytest.raises(StaleFence):
        await store.commit_step(old, new_id(), text_step())
    with pytest.raises(StaleFence):
        await store.finish_turn(old)
    assert await store.renew_leases("w1", [old.runner_id]) == set()
    await InvariantChecker(store, chat.id).check()


async def test_renewal_keeps_a_lease_alive(store: Store, clock: FakeClock) -> None:
    _chat, lease = await running_chat(store)
    for _ in range(3):
        clock.advance(store.config.lease_ttl * 0.8)
        assert await store.renew_leases("w1", [lease.runner_id]) == {lease.runner_id}
    assert await store.acquire_pending_chats("w2") == []
    clock.advance(store.config.lease_ttl * 3)
    assert await store.delete_expired_heartbeats() == 1


async def test_commit_step_writes_assistant_and_tool_messages_with_usage(store: Store) -> None:
    _, chat = await new_chat(store)
    lease = await acquire(store, chat.id)
    step = PersistedStep(
        content=[
            TextPart("let me check"),
            TextPart("   "),
            SourcePart(url="https://example.com"),
            *tool_step().content,
        ],
        usage=Usage(input_tokens=10, output_tokens=5, total_tokens=15),
        context_limit=8192,
        runtime=0.25,
    )
    step_id = new_id()
    after = await store.commit_step(lease, step_id, step, provider="scripted", model="default")
    assert after.history_version == after.snapshot_version == chat.snapshot_version + 2
    assistant, tool = (await store.list_messages(chat.id))[-2:]
    assert assistant.role == Role.ASSISTANT and tool.role == Role.TOOL
    assert [type(p) for p in assistant.parts] == [TextPart, SourcePart, ToolCallPart]
    assert (assistant.input_tokens, assistant.output_tokens, assistant.total_tokens) == (10, 5, 15)
    assert (assistant.context_limit, assistant.runtime_ms, assistant.model) == (
        8192,
        250,
        "default",
    )
    assert assistant.step_id == tool.step_id == step_id and assistant.run_id == lease.runner_id
    history = await store.load_history(chat.id)
    assert all(not isinstance(p, SourcePart) for m in history.messages for p in m.content)
    # the same step again (an ambiguous commit retried) is not written twice
    again = await store.commit_step(lease, step_id, step, expected_history_version=1)
    assert again.snapshot_version == after.snapshot_version
    assert len(await store.list_messages(chat.id)) == 3
    await InvariantChecker(store, chat.id).check()


async def test_commit_step_is_fenced_by_history_version_and_interrupts(store: Store) -> None:
    chat, lease = await running_chat(store)
    with pytest.raises(StaleFence):
        await store.commit_step(lease, new_id(), text_step(), expected_history_version=1)
    await store.interrupt(chat.id)
    with pytest.raises(ChatIsInterrupting) as caught:
        await store.commit_step(lease, new_id(), text_step())
    # a plain store refusal (the runner hands the loop its own ChatInterrupted)
    assert isinstance(caught.value, StoreError) and caught.value.chat.id == chat.id
    with pytest.raises(ChatIsInterrupting):
        await store.record_generation_attempt(lease)


async def test_generation_attempts_and_retry_state_follow_the_version_rules(store: Store) -> None:
    chat, lease = await running_chat(store)
    first = await store.record_generation_attempt(lease)
    assert first.generation_attempt == 1
    retry = await store.record_retry_state(lease, {"attempt": 1, "delay_ms": 1000})
    assert retry.retry_state == {"attempt": 1, "delay_ms": 1000}
    assert retry.retry_state_version == retry.snapshot_version
    second = await store.record_generation_attempt(lease)
    assert second.generation_attempt == 2 and second.retry_state is None
    assert second.retry_state_version == second.snapshot_version
    committed = await store.commit_step(lease, new_id(), text_step())
    assert committed.generation_attempt == 0
    await InvariantChecker(store, chat.id).check()


@pytest.mark.parametrize("queued", [0, 1])
async def test_finish_turn_waits_or_promotes_the_queue_head(store: Store, queued: int) -> None:
    chat, lease = await running_chat(store, queued)
    after = await store.finish_turn(lease)
    assert after.state == ("P0" if queued else "W")
    assert after.runner_id is None and after.retry_state is None
    if queued:
        assert (await store.list_messages(chat.id))[-1].parts == text("queued 0")
    await InvariantChecker(store, chat.id).check()


async def test_enter_requires_action_sets_a_deadline_and_releases_the_lease(
    store: Store, clock: FakeClock
) -> None:
    chat, lease = await running_chat(store)
    with pytest.raises(TransitionRejected):  # nothing pending
        await store.enter_requires_action(lease)
    await store.commit_step(lease, new_id(), dynamic_step("d1"))
    after = await store.enter_requires_action(lease)
    assert after.state == "A0" and after.runner_id is None
    assert after.requires_action_deadline_at is not None
    assert (after.requires_action_deadline_at - clock()).total_seconds() == 300
    await InvariantChecker(store, chat.id).check()


async def test_the_deadline_sweeper_ends_requires_action_in_error(
    store: Store, clock: FakeClock
) -> None:
    chat, _ = await requires_action_chat(store, queued=1)
    assert await store.expire_requires_action() == []
    clock.advance(301)
    [expired] = await store.expire_requires_action()
    assert expired.id == chat.id and expired.state == "E1"
    assert expired.last_error is not None
    assert expired.last_error["kind"] == "requires_action_timeout"
    results = [p for m in await store.list_messages(chat.id) for p in m.parts]
    errors = [p for p in results if isinstance(p, ToolResultPart)]
    assert {p.tool_call_id for p in errors} == {"dyn_1", "dyn_2"}
    assert all(
        isinstance(p.output, ToolResultError) and "deadline" in (p.output.error or "")
        for p in errors
    )
    await InvariantChecker(store, chat.id).check()


@pytest.mark.parametrize("queued", [0, 1])
async def test_finish_interruption_commits_the_partial_step(store: Store, queued: int) -> None:
    chat, lease = await running_chat(store, queued)
    await store.interrupt(chat.id)
    partial = PersistedStep(content=[TextPart("half an ans"), ToolCallPart("c9", "slow", "{}")])
    after = await store.finish_interruption(lease, partial, step_id=new_id())
    assert after.state == ("P0" if queued else "W") and after.runner_id is None
    messages = await store.list_messages(chat.id)
    tail = messages[-3:] if queued else messages[-2:]
    assert tail[0].parts[0] == TextPart("half an ans")
    [cancelled] = tail[1].parts
    assert isinstance(cancelled, ToolResultPart) and cancelled.tool_call_id == "c9"
    assert cancelled.output == ToolResultError(CANCELLED_TOOL_RESULT)
    await InvariantChecker(store, chat.id).check()


async def test_finish_interruption_after_takeover_has_no_partial(
    store: Store, clock: FakeClock
) -> None:
    chat, _ = await running_chat(store, queued=1)
    await store.interrupt(chat.id)
    clock.advance(store.config.lease_ttl + 1)
    [lease] = await store.acquire_pending_chats("w2")
    after = await store.finish_interruption(fence(lease))
    assert after.state == "P0"
    with pytest.raises(StaleFence):  # the lease ended with the interruption
        await store.finish_interruption(fence(lease))


@pytest.mark.parametrize("interrupting", [False, True])
async def test_finish_error_stores_the_classified_error(store: Store, interrupting: bool) -> None:
    chat, lease = await running_chat(store, queued=1)
    if interrupting:
        await store.interrupt(chat.id)
    error = ClassifiedError(kind="rate_limit", message="Slow down.", provider="openai")
    after = await store.finish_error(lease, error)
    assert after.state == "E1" and after.runner_id is None
    assert after.last_error == error.to_dict()
    await InvariantChecker(store, chat.id).check()


async def test_abandon_hands_the_chat_back(store: Store) -> None:
    chat, lease = await running_chat(store)
    after = await store.abandon(lease)
    assert after.state == "P0" and after.runner_id is None
    [again] = await store.acquire_pending_chats("w2")
    assert again.lease_epoch == 2
    await store.interrupt(chat.id)
    assert (await store.abandon(fence(again))).state == "I0"
    await InvariantChecker(store, chat.id).check()


async def test_commit_compaction_hides_history_behind_a_summary(store: Store) -> None:
    user = await store.create_user("alice")
    chat = await store.create_chat(user.id, text("first"), system_prompt="sys")
    lease = await acquire(store, chat.id)
    await store.commit_step(lease, new_id(), text_step("reply"))
    after = await store.commit_compaction(lease, "Summary: said hi.", summary="said hi")
    assert after.state == "R0" and after.compaction_requested_at is None
    assert after.history_reset_version == after.snapshot_version
    history = await store.load_history(chat.id)
    assert [m.content for m in history.messages] == [
        [TextPart("sys")],
        [TextPart("Summary: said hi.")],
    ]
    visible = await store.list_messages(chat.id)
    assert [m.role for m in visible] == [Role.ASSISTANT, Role.TOOL]
    await InvariantChecker(store, chat.id).check()


async def test_load_history_after_a_position_reads_only_what_is_new(store: Store) -> None:
    chat, lease = await running_chat(store)
    full = await store.load_history(chat.id)
    assert full.last_position == 2
    await store.commit_step(lease, new_id(), tool_step())
    new = await store.load_history(chat.id, after_position=full.last_position)
    assert [m.role for m in new.messages] == [Role.ASSISTANT, Role.TOOL]
    assert new.last_position == 4 and new.history_reset_version == full.history_reset_version
    empty = await store.load_history(chat.id, after_position=new.last_position)
    assert empty.messages == [] and empty.last_position == 4


async def test_events_are_appended_by_the_owner_only(store: Store) -> None:
    chat, lease = await running_chat(store)
    events = [StreamEvent(seq=seq, type="message_part", data={"n": seq}) for seq in (1, 2, 3)]
    await store.append_events(lease, events[:2], emitted_state={"status": "running"})
    after = await store.commit_step(lease, new_id(), text_step(), events=events[2:])
    assert [e.seq for e in await store.read_events(chat.id)] == [1, 2, 3]
    assert [e.data for e in await store.read_events(chat.id, after_seq=2)] == [{"n": 3}]
    assert after.emitted_state == {"status": "running"}
    near_end = StreamEvent(seq=after.seq_reserved - 10, type="status", data={})
    bumped = await store.append_events(lease, [near_end])
    assert bumped.seq_reserved == after.seq_reserved + store.config.seq_block
    await store.finish_turn(lease)
    with pytest.raises(StaleFence):
        await store.append_events(lease, [StreamEvent(seq=99, type="status", data={})])


async def test_new_events_of_several_chats_in_one_read(store: Store) -> None:
    """The relay's read: each chat's rows after its own cursor, chat by chat in seq order."""
    a, lease_a = await running_chat(store)
    b, lease_b = await running_chat(store)
    await store.append_events(lease_a, [StreamEvent(seq=s, type="x", data={}) for s in (1, 2, 3)])
    await store.append_events(lease_b, [StreamEvent(seq=s, type="x", data={}) for s in (1, 2)])
    rows = await store.read_new_events({a.id: 1, b.id: 0})
    got = {(chat_id, event.seq) for chat_id, event in rows}
    assert got == {(a.id, 2), (a.id, 3), (b.id, 1), (b.id, 2)}
    for chat_id in (a.id, b.id):
        seqs = [event.seq for c, event in rows if c == chat_id]
        assert seqs == sorted(seqs)
    assert len(await store.read_new_events({a.id: 0, b.id: 0}, limit=2)) == 2
    assert await store.read_new_events({}) == []


async def test_batch_flushes_are_read_the_same_before_and_after_the_tail_is_folded(
    store: Store,
) -> None:
    """SQLite's flushes land in an append-only tail first; every read sees the whole log."""
    a, lease_a = await running_chat(store)
    b, lease_b = await running_chat(store)

    def events(*seqs: int) -> list[StreamEvent]:
        return [StreamEvent(seq=s, type="message_part", data={"n": s}) for s in seqs]

    await store.append_events_batch([(lease_a, events(1, 2), None), (lease_b, events(1), None)])
    # A step commit writes its events to the log itself, between two flushes.
    await store.commit_step(lease_a, new_id(), text_step(), events=events(3))
    await store.append_events_batch([(lease_a, events(4), None), (lease_b, events(2, 3), None)])

    async def log_view() -> tuple[list[int], list[int], set[tuple[str, int]], int]:
        return (
            [e.seq for e in await store.read_events(a.id)],
            [e.seq for e in await store.read_events(a.id, after_seq=2, limit=1)],
            {(c, e.seq) for c, e in await store.read_new_events({a.id: 3, b.id: 1})},
            await store.last_event_seq(b.id),
        )

    before = await log_view()
    assert before == ([1, 2, 3, 4], [3], {(a.id, 4), (b.id, 2), (b.id, 3)}, 3)
    moved = await store.fold_event_tail()
    assert moved == (6 if store.db.is_sqlite else 0)
    assert await log_view() == before
    assert await store.fold_event_tail() == 0  # nothing left to move
    # The next flush goes to the tail again; a deleted chat takes its tail rows along.
    await store.append_events_batch([(lease_b, events(4), None)])
    assert await store.last_event_seq(b.id) == 4
    await store.finish_turn(lease_b)
    await store.delete_chat(b.id)
    assert await store.read_events(b.id) == [] and await store.last_event_seq(b.id) == 0
    assert await store.fold_event_tail() == 0


async def test_the_janitor_keeps_the_newest_events_of_each_chat(
    store: Store, clock: FakeClock
) -> None:
    chat, lease = await running_chat(store)
    quiet, _ = await running_chat(store)
    events = [StreamEvent(seq=seq, type="message_part", data={"n": seq}) for seq in range(1, 26)]
    await store.append_events(lease, events)
    assert await store.prune_events(10) == 1  # the quiet chat has nothing to prune
    assert [e.seq for e in await store.read_events(chat.id)] == list(range(16, 26))
    assert (await store.stream_bounds(chat.id))[0] == 15  # a resume below 15 gets a reset
    clock.advance(60)
    assert await store.prune_events(5, changed_since=clock()) == 0  # nothing changed since
    assert await store.prune_events(5, changed_since=clock() - timedelta(seconds=61)) == 1
    assert [e.seq for e in await store.read_events(chat.id)] == list(range(21, 26))
    assert (await store.stream_bounds(chat.id))[0] == 20
    assert quiet.id != chat.id


async def test_list_chats_pages_by_most_recent_update(store: Store, clock: FakeClock) -> None:
    user = await store.create_user("alice")
    ids = []
    for index in range(5):
        clock.advance(1)
        ids.append((await store.create_chat(user.id, text(f"chat {index}"))).id)
    clock.advance(1)
    await send(store, ids[0], "bump")  # the oldest chat becomes the most recent
    first = await store.list_chats(user.id, limit=2)
    assert [c.id for c in first.items] == [ids[0], ids[4]]
    assert first.next_cursor is not None
    second = await store.list_chats(user.id, limit=2, cursor=first.next_cursor)
    third = await store.list_chats(user.id, limit=2, cursor=second.next_cursor)
    assert [c.id for c in second.items + third.items] == [ids[3], ids[2], ids[1]]
    assert third.next_cursor is None


async def test_tokens_are_stored_hashed_and_keys_encrypted(store: Store, clock: FakeClock) -> None:
    user = await store.create_user("alice", is_admin=True)
    token, record = await store.create_api_token(user.id, name="laptop")
    assert token.startswith("chatd_") and record.prefix == token[:12]
    authenticated = await store.authenticate_token(token)
    assert authenticated is not None and authenticated.id == user.id and authenticated.is_admin
    assert await store.authenticate_token(token[:-1] + "x") is None
    await store.revoke_api_token(record.id)
    assert await store.authenticate_token(token) is None
    key = await store.create_provider_key("openai", "openai_chat", "sk-secret-abcd")
    assert key.last4 == "abcd"
    assert await store.reveal_provider_key(key.id) == "sk-secret-abcd"
    default = await store.get_model_config()
    assert default.name == "scripted:default" and default.is_default
    config = await store.create_model_config(
        "gpt", "openai_chat", "gpt-4o", provider_key_id=key.id, is_default=True
    )
    assert (await store.get_model_config()).id == config.id
    assert [c.name for c in await store.list_model_configs()] == ["gpt", "scripted:default"]


async def test_list_chats_filters_titles_and_archived(store: Store, clock: FakeClock) -> None:
    user = await store.create_user("searcher")
    plan = await store.create_chat(user.id, text("x"), title="Deploy plan")
    odd = await store.create_chat(user.id, text("x"), title="50% off_sale")
    notes = await store.create_chat(user.id, text("x"), title="deployment notes")
    for lease in await store.acquire_pending_chats("w1", limit=10):
        await store.finish_turn(fence(lease))
    await store.set_archived(notes.id, True)
    found = await store.list_chats(user.id, title_contains="DEPLOY")
    assert [c.id for c in found.items] == [plan.id]
    both = await store.list_chats(user.id, archived=None, title_contains="deploy")
    assert {c.id for c in both.items} == {plan.id, notes.id}
    assert [c.id for c in (await store.list_chats(user.id, title_contains="50%")).items] == [odd.id]
    assert (await store.list_chats(user.id, title_contains="5_%")).items == []


async def test_no_step_after_one_whose_tool_calls_wait_for_results(store: Store) -> None:
    """History stays valid provider input: a step with unanswered calls is the last one."""
    chat, lease = await running_chat(store)
    await store.commit_step(lease, new_id(), dynamic_step("d1"))
    with pytest.raises(TransitionRejected):
        await store.commit_step(lease, new_id(), text_step())
    waiting = await store.enter_requires_action(lease)
    assert waiting.status == ChatStatus.REQUIRES_ACTION
    await InvariantChecker(store, chat.id).check()
