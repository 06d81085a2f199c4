"""Deployment-wide capacity, on both engines: a claim takes pending chats only while
fewer than the limit of their kind (top-level chat or sub-agent) run, oldest first,
each kind on its own queue; taken-over chats are always claimed; concurrent claims
from several connections never overshoot; the counts and waits are reported."""

from __future__ import annotations

import asyncio

from chatd.store import Capacity, ChatStatus, Database, Store
from chatd.store.testing import FakeClock
from tests.store.conftest import CONFIG, Backend
from tests.store.helpers import fence, new_chat, text, text_step


async def pending_tree(store: Store, top_level: int, agents: int) -> tuple[list[str], list[str]]:
    """`top_level` pending chats (the first is the parent) and `agents` pending children."""
    owner, parent = await new_chat(store, "parent")
    top = [parent.id]
    for index in range(top_level - 1):
        top.append((await store.create_chat(owner, text(f"chat {index}"))).id)
    children = []
    for index in range(agents):
        child = await store.create_chat(owner, text(f"agent {index}"), parent_id=parent.id)
        children.append(child.id)
    return top, children


async def running_counts(store: Store, *ids: list[str]) -> dict[str, int]:
    counts = {"chat": 0, "agent": 0}
    for chat_id in [i for group in ids for i in group]:
        chat = await store.get_chat(chat_id)
        if chat.status in (ChatStatus.RUNNING, ChatStatus.INTERRUPTING):
            counts["agent" if chat.parent_id else "chat"] += 1
    return counts


async def test_each_kind_is_claimed_up_to_its_own_limit_oldest_first(
    store: Store, clock: FakeClock
) -> None:
    top, children = await pending_tree(store, top_level=6, agents=8)
    clock.advance(7)
    limits = Capacity(chats=2, agents=3)

    first = await store.acquire_chats("w1", limit=50, capacity=limits)

    claimed = [lease.chat.id for lease in first.leases]
    assert claimed == top[:2] + children[:3]  # each queue oldest first
    assert first.running == {"chat": 2, "agent": 3}
    assert first.queued == {"chat": 4, "agent": 5}
    assert sorted(first.waited) == [("agent", 7.0)] * 3 + [("chat", 7.0)] * 2
    assert await running_counts(store, top, children) == {"chat": 2, "agent": 3}

    # Full: another replica's claim takes nothing, and says so.
    again = await store.acquire_chats("w2", limit=50, capacity=limits)
    assert again.leases == []
    assert again.running == {"chat": 2, "agent": 3}
    assert again.queued == {"chat": 4, "agent": 5}

    # A finished agent frees one agent slot, not a chat slot.
    done = next(lease for lease in first.leases if lease.chat.id == children[0])
    await store.commit_step(fence(done), "s1", text_step("done"))
    await store.finish_turn(fence(done))
    freed = await store.acquire_chats("w2", limit=50, capacity=limits)
    assert [lease.chat.id for lease in freed.leases] == [children[3]]
    assert freed.running == {"chat": 2, "agent": 3}
    assert freed.queued == {"chat": 4, "agent": 4}


async def test_the_batch_limit_still_bounds_a_claim(store: Store) -> None:
    top, children = await pending_tree(store, top_level=3, agents=3)

    first = await store.acquire_chats("w1", limit=4, capacity=Capacity(chats=10, agents=10))

    assert [lease.chat.id for lease in first.leases] == top + children[:1]
    assert first.queued == {"chat": 0, "agent": 2}


async def test_a_zero_limit_is_no_limit_and_counts_nothing(store: Store) -> None:
    top, children = await pending_tree(store, top_level=3, agents=4)

    claim = await store.acquire_chats("w1", limit=50, capacity=Capacity(chats=1, agents=0))

    assert {lease.chat.id for lease in claim.leases} == {top[0], *children}
    assert claim.running == {"chat": 1, "agent": 4}
    unlimited = await store.acquire_chats("w1", limit=50, capacity=Capacity())
    assert {lease.chat.id for lease in unlimited.leases} == set(top[1:])
    assert unlimited.running == {} and unlimited.queued == {}


async def test_a_chat_whose_lease_expired_is_taken_over_even_at_the_limit(
    store: Store, clock: FakeClock
) -> None:
    top, children = await pending_tree(store, top_level=3, agents=3)
    limits = Capacity(chats=1, agents=1)
    first = await store.acquire_chats("w1", limit=50, capacity=limits)
    assert {lease.chat.id for lease in first.leases} == {top[0], children[0]}

    clock.advance(CONFIG.lease_ttl + 1)  # w1 died
    takeover = await store.acquire_chats("w2", limit=50, capacity=limits)

    assert {lease.chat.id for lease in takeover.leases} == {top[0], children[0]}
    assert takeover.waited == []  # they were running, not waiting
    assert takeover.running == {"chat": 1, "agent": 1}
    assert takeover.queued == {"chat": 2, "agent": 2}


async def test_concurrent_claims_from_many_connections_never_overshoot(
    backend: Backend, clock: FakeClock
) -> None:
    url = await backend.new_url()
    stores = [Store(Database(url), config=CONFIG, clock=clock) for _ in range(6)]
    try:
        top, children = await pending_tree(stores[0], top_level=20, agents=30)
        limits = Capacity(chats=3, agents=5)
        for _round in range(3):
            claims = await asyncio.gather(
                *(s.acquire_chats(f"w{i}", limit=4, capacity=limits) for i, s in enumerate(stores))
            )
            won = [lease.chat.id for claim in claims for lease in claim.leases]
            assert len(won) == len(set(won))
            assert await running_counts(stores[0], top, children) == {"chat": 3, "agent": 5}
    finally:
        for s in stores:
            await s.close()
