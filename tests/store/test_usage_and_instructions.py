"""Model prices, instructions and the usage sums in the store, on both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from chatd.loop import PersistedStep
from chatd.store import Database, InvalidRequest, NotFound, Store, UsageTotals, new_id, upgrade
from chatd.store._migrations import _config
from chatd.store._schema import model_configs
from chatd.store.testing import FakeClock
from chatd.types import TextPart, Usage
from tests.store.conftest import Backend
from tests.store.helpers import OLD_USER_ROW, acquire, new_chat


def step(input_tokens: int, output_tokens: int, cache_read: int = 0) -> PersistedStep:
    usage = Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read
    )
    return PersistedStep(content=[TextPart("answer")], usage=usage)


async def test_prices_are_stored_as_decimal_strings_and_bad_ones_change_nothing(
    store: Store,
) -> None:
    config = await store.create_model_config(
        "priced",
        "scripted",
        "m",
        pricing={
            "input_price_per_million_tokens": 3,
            "cache_read_price_per_million_tokens": "0.30",
        },
    )
    assert config.pricing == {
        "input_price_per_million_tokens": "3",
        "cache_read_price_per_million_tokens": "0.3",
    }
    assert (await store.get_model_config(config.id)).pricing == config.pricing
    for bad in (
        {"input_price_per_token": 1},
        {"output_price_per_million_tokens": -1},
        {"output_price_per_million_tokens": "NaN"},
        {"output_price_per_million_tokens": "lots"},
        {"output_price_per_million_tokens": 10**7},
    ):
        with pytest.raises(InvalidRequest):
            await store.update_model_config(config.id, pricing=bad)
        with pytest.raises(InvalidRequest):
            await store.create_model_config("other", "scripted", "m", pricing=bad)
    assert (await store.get_model_config(config.id)).pricing == config.pricing
    async with store.db.read() as conn:
        names = (await conn.execute(sa.select(model_configs.c.name))).scalars().all()
    assert "other" not in names
    cleared = await store.update_model_config(config.id, pricing=None)
    assert cleared.pricing is None


async def test_instructions_of_the_deployment_and_of_a_user(store: Store) -> None:
    user = await store.create_user("ann")
    assert await store.instructions_for(user.id) == (user, None)
    assert await store.set_deployment_instructions("Be brief.") == "Be brief."
    assert await store.set_deployment_instructions("Be very brief.") == "Be very brief."
    updated = await store.set_instructions(user.id, "Answer in French.")
    assert updated.instructions == "Answer in French."
    owner, deployment = await store.instructions_for(user.id)
    assert (owner.instructions, deployment) == ("Answer in French.", "Be very brief.")
    assert await store.set_deployment_instructions("  ") is None
    assert (await store.set_instructions(user.id, None)).instructions is None
    assert await store.deployment_instructions() is None
    with pytest.raises(NotFound):
        await store.set_instructions("nobody", "x")
    with pytest.raises(NotFound):
        await store.instructions_for("nobody")
    with pytest.raises(InvalidRequest):
        await store.set_instructions(user.id, "x" * 65537)
    assert (await store.get_user(user.id)).instructions is None


async def test_usage_sums_steps_by_model_per_chat_and_per_owner_since_a_time(
    store: Store, clock: FakeClock
) -> None:
    owner, first = await new_chat(store)
    lease = await acquire(store, first.id)
    await store.commit_step(
        lease, new_id(), step(100, 10), provider="p", model="a", cost_micros=1500
    )
    await store.commit_step(
        lease, new_id(), step(200, 20, cache_read=50), provider="p", model="b", cost_micros=None
    )
    await store.finish_turn(lease)
    clock.advance(3600)
    later = clock.now
    second = await store.create_chat(owner, [TextPart("again")])
    lease = await acquire(store, second.id)
    await store.commit_step(lease, new_id(), step(300, 30), provider="p", model="a", cost_micros=7)
    await store.finish_turn(lease)
    _other_owner, other = await new_chat(store)
    other_lease = await acquire(store, other.id)
    await store.commit_step(
        other_lease, new_id(), step(9, 9), provider="p", model="a", cost_micros=99
    )

    a_first = UsageTotals(
        provider="p", model="a", cost_micros=1500, input_tokens=100, output_tokens=10, messages=1
    )
    b_first = UsageTotals(
        provider="p",
        model="b",
        input_tokens=200,
        output_tokens=20,
        cache_read_tokens=50,
        messages=1,
        unpriced_messages=1,
    )
    assert await store.usage_by_model(chat_id=first.id) == [a_first, b_first]
    by_owner = await store.usage_by_model(owner_id=owner)
    assert by_owner == [
        UsageTotals(
            provider="p",
            model="a",
            cost_micros=1507,
            input_tokens=400,
            output_tokens=40,
            messages=2,
        ),
        b_first,
    ]
    assert UsageTotals.total(by_owner) == UsageTotals(
        cost_micros=1507,
        input_tokens=600,
        output_tokens=60,
        cache_read_tokens=50,
        messages=3,
        unpriced_messages=1,
    )
    since = await store.usage_by_model(owner_id=owner, since=later)
    assert since == [
        UsageTotals(
            provider="p", model="a", cost_micros=7, input_tokens=300, output_tokens=30, messages=1
        )
    ]
    assert await store.usage_by_model(owner_id=owner, since=later + timedelta(seconds=1)) == []
    assert await store.usage_by_model(chat_id="no-such-chat") == []


async def test_migration_0005_keeps_chats_and_users_both_ways(backend: Backend) -> None:
    db = Database(await backend.empty_url())
    try:
        await upgrade(db, "0003")
        async with db.write() as conn:
            await conn.execute(OLD_USER_ROW)
        await upgrade(db)  # through 0005; the store's code needs every later column too
        store = Store(db)
        assert (await store.get_user("u1")).instructions is None
        chat = await store.create_chat("u1", [TextPart("hi")])
        assert chat.instructions is None
        await store.set_deployment_instructions("Be brief.")
        async with db.write() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c), "0003"))
        async with db.read() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            chats_left = await conn.scalar(sa.text("SELECT count(*) FROM chats"))
            messages_left = await conn.scalar(sa.text("SELECT count(*) FROM chat_messages"))
        assert "deployment_settings" not in tables
        assert (chats_left, messages_left) == (1, 1)  # altered, not copied (no cascade)
    finally:
        await db.dispose()


async def test_steps_keep_their_cost_and_the_chat_the_instructions_its_run_applied(
    store: Store,
) -> None:
    _owner, chat = await new_chat(store)
    lease = await acquire(store, chat.id)
    chat = await store.commit_step(
        lease, new_id(), step(1, 1), cost_micros=5, instructions=["deployment", "chat"]
    )
    assert chat.instructions == ["deployment", "chat"]
    chat = await store.commit_step(lease, new_id(), step(1, 1), cost_micros=6)
    assert chat.instructions == ["deployment", "chat"]  # None leaves them
    await store.interrupt(chat.id)
    chat = await store.finish_interruption(
        lease, step(2, 2), step_id=new_id(), cost_micros=7, instructions=["user"]
    )
    assert chat.instructions == ["user"]
    assert (await store.get_chat(chat.id)).instructions == ["user"]
    messages = await store.list_all_messages(chat.id)
    assert [m.cost_micros for m in messages if m.step_id] == [5, 6, 7]
    [totals] = await store.usage_by_model(chat_id=chat.id)
    assert (totals.cost_micros, totals.messages) == (18, 3)
