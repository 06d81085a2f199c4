"""What chats cost: one chat's sums, one user's since a time (service spec §6.4, chatd).

`GET /api/chats/{chat_id}/cost` for the chat's owner (404 for anyone else);
`GET /api/users/me/usage` for the caller; `GET /api/users/{user_id}/usage` for
admins (403 otherwise, 404 for an unknown user). The sums come from the store's
`usage_by_model`; this module only shapes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatd.api.deps import Admin, User, app_state
from chatd.api.resources import owned_chat
from chatd.api.schemas import json_response
from chatd.store import UsageTotals
from chatd.stream.wire import timestamp

__all__ = ["router"]

router = APIRouter(tags=["usage"])


def _totals_json(totals: UsageTotals) -> dict[str, Any]:
    return {
        "cost_micros": totals.cost_micros,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_creation_tokens": totals.cache_creation_tokens,
        "messages": totals.messages,
        "unpriced_messages": totals.unpriced_messages,
    }


def _usage_json(by_model: list[UsageTotals]) -> dict[str, Any]:
    return {
        **_totals_json(UsageTotals.total(by_model)),
        "by_model": [
            {"provider": t.provider, "model": t.model, **_totals_json(t)} for t in by_model
        ],
    }


@router.get("/api/chats/{chat_id}/cost")
async def chat_cost(chat_id: str, request: Request, user: User) -> Response:
    """The chat's cost and tokens, in all and by model (hidden messages included).

    A parent's sums include its agents' (child chats'); `own` is the parent's alone
    and `agents` each child's."""
    state = app_state(request)
    chat = await owned_chat(state, chat_id, user)
    store = state.store
    children = await store.list_children(chat.id) if chat.parent_id is None else []
    if not children:
        return json_response(
            {"chat_id": chat.id, **_usage_json(await store.usage_by_model(chat_id=chat.id))}
        )
    by_chat = await store.usage_by_chat([chat.id, *(child.id for child in children)])
    return json_response(
        {
            "chat_id": chat.id,
            **_usage_json(_merged([t for totals in by_chat.values() for t in totals])),
            "own": _usage_json(by_chat[chat.id]),
            "agents": [
                {"chat_id": child.id, "title": child.title, **_usage_json(by_chat[child.id])}
                for child in children
            ],
        }
    )


def _merged(parts: list[UsageTotals]) -> list[UsageTotals]:
    """Per-model sums of several chats' per-model sums, ordered by provider and model."""
    models = sorted({(t.provider, t.model) for t in parts}, key=lambda k: (k[0] or "", k[1] or ""))
    return [
        msgspec.structs.replace(
            UsageTotals.total([t for t in parts if (t.provider, t.model) == key]),
            provider=key[0],
            model=key[1],
        )
        for key in models
    ]


async def _user_usage(request: Request, user_id: str, since: datetime | None) -> Response:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is UTC
    by_model = await app_state(request).store.usage_by_model(owner_id=user_id, since=since)
    return json_response({"user_id": user_id, "since": timestamp(since), **_usage_json(by_model)})


@router.get("/api/users/me/usage")
async def my_usage(request: Request, user: User, since: datetime | None = None) -> Response:
    """The caller's chats' cost and tokens, of messages created at or after `since`."""
    return await _user_usage(request, user.user_id, since)


@router.get("/api/users/{user_id}/usage")
async def user_usage(
    user_id: str, request: Request, _admin: Admin, since: datetime | None = None
) -> Response:
    """One user's chats' cost and tokens (admins only)."""
    await app_state(request).store.get_user(user_id)  # 404 for an unknown user
    return await _user_usage(request, user_id, since)
