"""User routes: who the caller is, and (admins only) each user's built-in tool policy.

`GET /api/users/me` for anyone; `GET /api/users` and `PATCH /api/users/{user_id}`
for admins (403 otherwise). A user's JSON carries their override (`tool_policy`,
null for the default) and the built-in tools it lets them enable (`builtin_tools`),
computed by `chatd.tools` from the deployment's default. Users are created with the
CLI (`chatd users create`), never here.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from fastapi import APIRouter, Request

from chatd.api.deps import Admin, User, app_state
from chatd.api.schemas import Strict
from chatd.config import TOOL_POLICIES
from chatd.tools import allowed_builtin_tools, effective_tool_policy

__all__ = ["router"]

router = APIRouter(prefix="/api/users", tags=["users"])

ToolPolicy = Literal["none", "files", "all"]
assert get_args(ToolPolicy) == TOOL_POLICIES


class UserPatch(Strict):
    # Required, and null returns the user to the deployment's default.
    tool_policy: ToolPolicy | None


def _user_json(
    request: Request, user_id: str, username: str, is_admin: bool, tool_policy: str | None
) -> dict[str, Any]:
    default = app_state(request).builtin_tools
    policy = effective_tool_policy(tool_policy, is_admin=is_admin, default=default)
    return {
        "id": user_id,
        "username": username,
        "is_admin": is_admin,
        "tool_policy": tool_policy,
        "builtin_tools": sorted(allowed_builtin_tools(policy)),
    }


@router.get("/me")
async def me(request: Request, user: User) -> dict[str, Any]:
    """Who the token belongs to, and the built-in tools they may enable."""
    return _user_json(request, user.user_id, user.username, user.is_admin, user.tool_policy)


@router.get("")
async def list_users(request: Request, _admin: Admin) -> dict[str, Any]:
    """Every user, by name."""
    users = await app_state(request).store.list_users()
    return {
        "users": [_user_json(request, u.id, u.username, u.is_admin, u.tool_policy) for u in users]
    }


@router.patch("/{user_id}")
async def patch_user(
    user_id: str, body: UserPatch, request: Request, _admin: Admin
) -> dict[str, Any]:
    """Grant or restrict one user's built-in tools; `null` returns them to the default.
    Chats already created lose the tools no longer allowed at their next run."""
    u = await app_state(request).store.set_tool_policy(user_id, body.tool_policy)
    return _user_json(request, u.id, u.username, u.is_admin, u.tool_policy)
