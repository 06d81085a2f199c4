"""The OpenAI-compatible front door's responses (docs/openai.md): which turn each one is.

A row names a chat, the position of the message that starts the turn and a seq
below all of the turn's events; what the turn
produced is the chat's own history and stream, so nothing else is copied here. The
rows go with their chat (and their owner) when those are deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from chatd.store._base import StoreBase
from chatd.store._errors import NotFound
from chatd.store._models import StoredResponse
from chatd.store._schema import openai_responses

__all__ = ["OpenAIResponses"]

_R = openai_responses.c


def _response(row: Any) -> StoredResponse:
    return StoredResponse(**dict(row))


class OpenAIResponses(StoreBase):
    async def create_response(
        self,
        response_id: str,
        chat_id: str,
        owner_id: str,
        *,
        after_seq: int,
        position: int,
        request: dict[str, Any],
        created_at: datetime | None = None,
    ) -> StoredResponse:
        """Record that `response_id` is the turn of `chat_id` that the message at
        `position` starts, its events after `after_seq`."""
        row = {
            "id": response_id,
            "chat_id": chat_id,
            "owner_id": owner_id,
            "after_seq": after_seq,
            "position": position,
            "request": request,
            "created_at": created_at or self.clock(),
        }
        async with self.db.write() as conn:
            await conn.execute(sa.insert(openai_responses).values(row))
        return _response(row)

    async def get_response(self, response_id: str, *, owner_id: str) -> StoredResponse:
        """The caller's response (`NotFound` for another user's, as for a missing one)."""
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(openai_responses).where(
                            _R.id == response_id, _R.owner_id == owner_id
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound("response", response_id)
        return _response(row)

    async def latest_response_id(self, chat_id: str) -> str | None:
        """The id of the chat's newest response, if it has any."""
        async with self.db.read() as conn:
            newest: str | None = await conn.scalar(
                sa.select(_R.id)
                .where(_R.chat_id == chat_id)
                .order_by(_R.after_seq.desc(), _R.created_at.desc())
                .limit(1)
            )
        return newest

    async def delete_response(self, response_id: str, *, owner_id: str) -> None:
        """Forget the response (its chat and the turn's messages stay)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.delete(openai_responses).where(_R.id == response_id, _R.owner_id == owner_id)
            )
        if result.rowcount == 0:
            raise NotFound("response", response_id)
