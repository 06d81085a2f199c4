"""The instructions joined before every chat's system prompt: the deployment's (set by
an admin) and each user's own. Which of them a run applies is the worker's business.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from chatd.store._base import StoreBase
from chatd.store._errors import InvalidRequest, NotFound
from chatd.store._models import User
from chatd.store._schema import deployment_settings, users

__all__ = ["MAX_INSTRUCTIONS_CHARS", "InstructionSettings"]

# The deployment_settings row of the deployment's instructions.
_INSTRUCTIONS = "instructions"
# 64 KiB, as a chat's own system prompt: instructions are sent with every model call.
MAX_INSTRUCTIONS_CHARS = 65536


class InstructionSettings(StoreBase):
    async def set_instructions(self, user_id: str, text: str | None) -> User:
        """Set the user's own instructions (None or blank: none). NotFound for an
        unknown user."""
        value = _instructions(text)
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(users).where(users.c.id == user_id).values(instructions=value)
            )
        if result.rowcount == 0:
            raise NotFound("user", user_id)
        user, _deployment = await self.instructions_for(user_id)
        return user

    async def deployment_instructions(self) -> str | None:
        """The deployment's instructions, which an admin sets (None: none)."""
        s = deployment_settings.c
        async with self.db.read() as conn:
            value: str | None = await conn.scalar(sa.select(s.value).where(s.name == _INSTRUCTIONS))
        return value

    async def set_deployment_instructions(self, text: str | None) -> str | None:
        """Set (or, with None or blank text, clear) the deployment's instructions."""
        value = _instructions(text)
        s = deployment_settings.c
        async with self.db.write() as conn:
            await conn.execute(sa.delete(deployment_settings).where(s.name == _INSTRUCTIONS))
            if value is not None:
                await conn.execute(
                    sa.insert(deployment_settings).values(
                        name=_INSTRUCTIONS, value=value, updated_at=self.clock()
                    )
                )
        return value

    async def instructions_for(self, user_id: str) -> tuple[User, str | None]:
        """A chat owner and the deployment's instructions, in one read (a run's start)."""
        async with self.db.read() as conn:
            query = sa.select(users, _deployment_instructions().label("deployment"))
            row = (await conn.execute(query.where(users.c.id == user_id))).mappings().first()
        if row is None:
            raise NotFound("user", user_id)
        values = dict(row)
        deployment = values.pop("deployment")
        return User(**values), deployment


def _deployment_instructions() -> sa.ScalarSelect[Any]:
    s = deployment_settings.c
    return sa.select(s.value).where(s.name == _INSTRUCTIONS).scalar_subquery()


def _instructions(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidRequest(
            "invalid_request", f"Instructions are at most {MAX_INSTRUCTIONS_CHARS} characters."
        )
    return text
