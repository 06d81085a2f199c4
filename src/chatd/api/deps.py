"""What routes share per request: the app's state, its store, the caller, admins only,
the `Idempotency-Key` header.

Routes import this module, `schemas` and `sse`; `app.py` assembles the routers and
nothing here imports a router or the app.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from chatd.api.auth import Principal
from chatd.api.errors import ApiError
from chatd.api.state import AppState
from chatd.store import Store

__all__ = [
    "Admin",
    "IdempotencyKey",
    "User",
    "app_state",
    "current_user",
    "require_admin",
    "store_of",
]

#: A retried create or send with the same key answers with the first one's result;
#: 128 characters, the width of the column that keeps it.
IdempotencyKey = Annotated[str | None, Header(max_length=128)]


def app_state(request: Request) -> AppState:
    """The state of the app serving `request`."""
    state: AppState = request.app.state.chatd
    return state


def store_of(request: Request) -> Store:
    """The store of the app serving `request`."""
    return app_state(request).store


async def current_user(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer …` (or `?access_token=` on SSE routes)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.url.path.endswith(("/stream", "/watch")):
        token, scheme = request.query_params.get("access_token", ""), "bearer"
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError.unauthorized("missing bearer token")
    user = await store_of(request).authenticate_token(token.strip())
    if user is None:
        raise ApiError.unauthorized("unknown or revoked token")
    return Principal(user.id, user.username, user.is_admin, user.tool_policy)


User = Annotated[Principal, Depends(current_user)]


async def require_admin(user: User) -> Principal:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "This route needs an admin token.")
    return user


Admin = Annotated[Principal, Depends(require_admin)]
