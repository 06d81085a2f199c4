"""The authenticated caller. Tokens are issued, hashed and checked by the store
(`Store.create_api_token`, `Store.authenticate_token`); this module only names
the principal the routes receive."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    username: str
    is_admin: bool = False
    # The admin's override of the deployment's built-in tool policy (None: the default).
    tool_policy: str | None = None
