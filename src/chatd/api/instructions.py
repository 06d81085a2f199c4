"""The instructions joined before every chat's system prompt (service spec §6.4, chatd).

`GET|PUT /api/chats/config/system-prompt`: the deployment's, admins only (403
otherwise). `GET|PUT /api/chats/config/user-prompt`: the caller's own. An empty
string clears either. Runs read them when they start; which ones a chat's last run
applied is its resource's `instructions`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from chatd.api.deps import Admin, User, store_of
from chatd.api.schemas import Strict
from chatd.store import MAX_INSTRUCTIONS_CHARS

__all__ = ["router"]

router = APIRouter(prefix="/api/chats/config", tags=["instructions"])


class SystemPrompt(Strict):
    system_prompt: str = Field(max_length=MAX_INSTRUCTIONS_CHARS)


class UserPrompt(Strict):
    user_prompt: str = Field(max_length=MAX_INSTRUCTIONS_CHARS)


@router.get("/system-prompt")
async def get_system_prompt(request: Request, _admin: Admin) -> dict[str, Any]:
    """The deployment's instructions ("" when none)."""
    return {"system_prompt": await store_of(request).deployment_instructions() or ""}


@router.put("/system-prompt")
async def put_system_prompt(body: SystemPrompt, request: Request, _admin: Admin) -> dict[str, Any]:
    """Set the deployment's instructions for every chat's next run ("" clears them)."""
    stored = await store_of(request).set_deployment_instructions(body.system_prompt)
    return {"system_prompt": stored or ""}


@router.get("/user-prompt")
async def get_user_prompt(request: Request, user: User) -> dict[str, Any]:
    """The caller's own instructions ("" when none)."""
    owner = await store_of(request).get_user(user.user_id)
    return {"user_prompt": owner.instructions or ""}


@router.put("/user-prompt")
async def put_user_prompt(body: UserPrompt, request: Request, user: User) -> dict[str, Any]:
    """Set the caller's instructions for their chats' next runs ("" clears them)."""
    owner = await store_of(request).set_instructions(user.user_id, body.user_prompt)
    return {"user_prompt": owner.instructions or ""}
