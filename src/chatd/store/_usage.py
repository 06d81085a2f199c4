"""Reads of what chats cost: token and cost sums of assistant messages, by model.

Only steps count (assistant rows with a `step_id`): compaction boundaries and
system rows spent nothing. Hidden (compressed or edited-away) messages count too:
their tokens were spent. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from chatd.store._base import StoreBase
from chatd.store._models import UsageTotals
from chatd.store._schema import chat_messages, chats
from chatd.types import Role

__all__ = ["UsageReads"]

_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


def _sums(*keys: Any) -> sa.Select[Any]:
    """Steps' token and cost sums, grouped by `keys`, then provider and model (by name)."""
    m = chat_messages.c
    unpriced = sa.case((m.cost_micros.is_(None), 1), else_=0)
    return (
        sa.select(
            *keys,
            m.provider,
            m.model,
            sa.func.coalesce(sa.func.sum(m.cost_micros), 0).label("cost_micros"),
            *(sa.func.coalesce(sa.func.sum(m[name]), 0).label(name) for name in _TOKENS),
            sa.func.count().label("messages"),
            sa.func.sum(unpriced).label("unpriced_messages"),
        )
        .where(m.role == Role.ASSISTANT, m.step_id.is_not(None))
        .group_by(*keys, m.provider, m.model)
        .order_by(*keys, sa.func.coalesce(m.provider, ""), sa.func.coalesce(m.model, ""))
    )


def _totals(row: Any) -> UsageTotals:
    return UsageTotals(
        provider=row["provider"],
        model=row["model"],
        **{k: int(row[k]) for k in ("cost_micros", *_TOKENS, "messages")},
        unpriced_messages=int(row["unpriced_messages"]),
    )


class UsageReads(StoreBase):
    async def usage_by_model(
        self,
        *,
        chat_id: str | None = None,
        owner_id: str | None = None,
        since: datetime | None = None,
    ) -> list[UsageTotals]:
        """Sums of one chat's (`chat_id`) or one user's chats' (`owner_id`) assistant
        messages created at or after `since`, one entry per provider and model, by name."""
        m = chat_messages.c
        query = _sums()
        if chat_id is not None:
            query = query.where(m.chat_id == chat_id)
        if owner_id is not None:
            query = query.join(chats, chats.c.id == m.chat_id).where(chats.c.owner_id == owner_id)
        if since is not None:
            query = query.where(m.created_at >= since)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_totals(row) for row in rows]

    async def usage_by_chat(self, chat_ids: Sequence[str]) -> dict[str, list[UsageTotals]]:
        """`usage_by_model` of each of `chat_ids` (a parent and its agents), in one read;
        a chat with no step has an empty list."""
        m = chat_messages.c
        query = _sums(m.chat_id).where(m.chat_id.in_(list(chat_ids)))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        found: dict[str, list[UsageTotals]] = {chat_id: [] for chat_id in chat_ids}
        for row in rows:
            found[row["chat_id"]].append(_totals(row))
        return found
