"""The dependencies routes share: the caller (`User`), admins only (`Admin`).

Routes import this module; `app.py` assembles the routers and imports nothing back
from them. It names what it needs of the app's state as a small protocol, so it
depends on the store, not on the app.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, Request

from chatd.api.auth import Principal
from chatd.api.errors import ApiError
from chatd.store import Store

__all__ = ["Admin", "User", "UserState", "current_user", "require_admin", "user_state"]


class UserState(Protocol):
    """What the user routes need of `chatd.api.AppState`."""

    store: Store
    builtin_tools: str  # the deployment's built-in tool policy (CHATD_BUILTIN_TOOLS)


def user_state(request: Request) -> UserState:
    """The state of the app serving `request`."""
    state: UserState = request.app.state.chatd
    return state


async def current_user(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer …` (or `?access_token=` on SSE routes)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.url.path.endswith(("/stream", "/watch")):
        token, scheme = request.query_params.get("access_token", ""), "bearer"
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError.unauthorized("missing bearer token")
    user = await user_state(request).store.authenticate_token(token.strip())
    if user is None:
        raise ApiError.unauthorized("unknown or revoked token")
    return Principal(user.id, user.username, user.is_admin, user.tool_policy)


User = Annotated[Principal, Depends(current_user)]


async def require_admin(user: User) -> Principal:
    if not user.is_admin:
        raise ApiError(403, "forbidden", "This route needs an admin token.")
    return user


Admin = Annotated[Principal, Depends(require_admin)]
