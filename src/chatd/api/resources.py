"""The reads chat routes share: the caller's chat, a model config by name, the full chat
resource, and a subscription to a chat's stream.

A route that changes a chat answers with `chat_resource`, which asks the store for
everything beyond the row in one read (`Store.chat_details`). Nothing here writes.
"""

from __future__ import annotations

from typing import Any

from chatd.api.auth import Principal
from chatd.api.errors import ApiError
from chatd.api.state import AppState
from chatd.store import Chat, ModelConfig
from chatd.stream import StoreLog, Subscription
from chatd.stream.events import pending_tool_calls
from chatd.stream.wire import chat_json, timestamp

__all__ = ["chat_resource", "follow_stream", "model_config_named", "owned_chat"]


async def owned_chat(state: AppState, chat_id: str, user: Principal) -> Chat:
    """The chat, if the caller owns it (404 `not_found` otherwise, never 403)."""
    return await state.store.get_chat(chat_id, owner_id=user.user_id)


async def model_config_named(state: AppState, reference: str | None) -> ModelConfig | None:
    """A `provider:model`, config name or id → the enabled config (422 otherwise)."""
    if reference is None:
        return None
    for config in await state.store.list_model_configs():
        names = {config.id, config.name, f"{config.provider}:{config.model}"}
        if reference in names and config.enabled:
            return config
    raise ApiError(
        422,
        "invalid_model",
        "Choose a model from GET /api/chats/models.",
        f"no enabled model config named {reference!r}",
    )


async def chat_resource(
    state: AppState, chat: Chat, config: ModelConfig | None = None
) -> dict[str, Any]:
    """The full chat resource; `config`, when the route already read it, saves reading it."""
    details = await state.store.chat_details(chat, model_config=config)
    model = details.model_config
    return chat_json(
        chat,
        queue=details.queue,
        model=f"{model.provider}:{model.model}" if model is not None else None,
        requires_action=_requires_action(chat, pending_tool_calls(details.messages)),
        usage=details.usage,
        children=details.children,
    )


def _requires_action(chat: Chat, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The `action_required` payload while the chat waits for client tools (spec §6.3)."""
    if chat.requires_action_deadline_at is None or not calls:
        return None
    return {"tool_calls": calls, "deadline_at": timestamp(chat.requires_action_deadline_at)}


async def follow_stream(state: AppState, chat_id: str, cursor: int) -> Subscription:
    """The chat's events after `cursor` (the durable log, then live), relayed here from
    whichever replica runs the chat. A draining replica refuses (503): reconnect."""
    if state.draining:
        raise ApiError(
            503,
            "unavailable",
            "The server is shutting down; reconnect.",
            headers={"Retry-After": "1"},
        )
    subscription = state.hub.subscribe(chat_id, cursor, StoreLog(state.store))
    if state.follow_chat is not None:
        try:
            await state.follow_chat(chat_id)
        except BaseException:
            subscription.close()
            raise
    return subscription
