"""The chat collection and resource (service spec §6.4): create, list, watch, models, read,
rename or archive, delete.

Every handler validates its input and calls one store transition or read; the
store's refusals become HTTP errors in `chatd.api.errors`. No handler compares
statuses or writes SQL. What acts on one chat's conversation is in `turns`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from chatd.api.auth import Principal
from chatd.api.deps import IdempotencyKey, User, app_state
from chatd.api.errors import ApiError
from chatd.api.resources import chat_resource, model_config_named, owned_chat
from chatd.api.schemas import ASCII_DIGITS, CreateChat, PatchChat, json_response
from chatd.api.sse import SSE_RETRY_MS, SseResponse
from chatd.api.state import AppState
from chatd.store import ModelConfig, NotFound
from chatd.stream.wire import chat_json
from chatd.tools import (
    PROCESS_TOOL_NAMES,
    ToolConfigError,
    allowed_builtin_tools,
    effective_tool_policy,
)
from chatd.tools import ToolConfig as ToolSelectionConfig

__all__ = ["router"]

router = APIRouter(prefix="/api/chats", tags=["chats"])


async def _check_mcp_servers(state: AppState, slugs: list[str]) -> None:
    """Every slug names a configured, enabled MCP server (422 otherwise). Only chats
    that name servers pay for this read."""
    enabled = {s.slug: s.enabled for s in await state.store.list_mcp_servers(slugs)}
    unknown = sorted(set(slugs) - set(enabled))
    disabled = sorted(slug for slug, on in enabled.items() if not on)
    if unknown or disabled:
        problems = [f"unknown MCP servers {unknown}"] if unknown else []
        problems += [f"disabled MCP servers {disabled}"] if disabled else []
        raise ApiError(
            422,
            "invalid_request",
            "Name only MCP servers an admin has configured and enabled in tools.mcp_servers.",
            "; ".join(problems),
        )


def _check_builtin(state: AppState, user: Principal, names: tuple[str, ...]) -> None:
    """The caller's effective tool policy allows every built-in the chat asks for, and
    the tools that run commands have a usable sandbox (422 otherwise)."""
    policy = effective_tool_policy(
        user.tool_policy, is_admin=user.is_admin, default=state.builtin_tools
    )
    allowed = allowed_builtin_tools(policy)
    refused = [name for name in names if name not in allowed]
    if refused:
        raise ApiError(
            422,
            "tool_not_allowed",
            f"You may not enable {', '.join(refused)}; leave them out of tools.builtin, or "
            f"ask an admin to grant them (`chatd users tools {user.username} all`).",
            f"refused built-in tools {refused}: the tool policy {policy!r} allows "
            f"{sorted(allowed)}",
        )
    commands = [name for name in names if name in PROCESS_TOOL_NAMES]
    if commands and state.sandbox_error is not None:
        raise ApiError(
            422,
            "sandbox_unavailable",
            state.sandbox_error,
            f"{', '.join(commands)} run commands in the OS sandbox, which is unusable on "
            "this server; leave them out of tools.builtin",
        )


async def _check_provider_tools(
    state: AppState, config: ModelConfig | None, names: tuple[str, ...]
) -> None:
    """The chat's model config (the default when none is named) allows every provider
    tool the chat asks for (422 naming the others)."""
    try:
        config = config or await state.store.get_model_config(None)
    except NotFound:
        config = None
    allowed = (config.provider_tools or []) if config is not None else []
    refused = [name for name in names if name not in allowed]
    if refused:
        model = f"{config.name!r}" if config is not None else "the default model"
        raise ApiError(
            422,
            "tool_not_allowed",
            f"The model {model} does not allow {', '.join(refused)}; leave it out of "
            "tools.provider, choose a model that allows it, or ask an admin to add it to "
            "the model config's provider_tools.",
            f"refused provider tools {refused}: the model config allows {allowed}",
        )


@router.post("", status_code=201)
async def create_chat(
    body: CreateChat, request: Request, user: User, idempotency_key: IdempotencyKey = None
) -> Response:
    """Start a chat with its first message; a worker picks it up at once."""
    state = app_state(request)
    config = await model_config_named(state, body.model)
    tools = body.tools.model_dump(exclude_none=True) if body.tools is not None else None
    if tools is not None:
        try:
            selection = ToolSelectionConfig.from_json(tools)
        except ToolConfigError as err:
            raise ApiError(
                422, "invalid_request", "Fix the chat's tools and retry.", str(err)
            ) from None
        if "builtin" in tools:  # opt-in: without the key the chat gets no built-in
            _check_builtin(state, user, selection.builtin_names())
        if tools.get("mcp_servers"):
            await _check_mcp_servers(state, tools["mcp_servers"])
        if selection.provider:
            await _check_provider_tools(state, config, selection.provider)
    chat = await state.store.create_chat(
        user.user_id,
        body.parts(),
        title=body.title,
        model_config_id=config.id if config is not None else None,
        tool_config=tools,
        system_prompt=body.system_prompt,
        request_key=idempotency_key,
        mode=body.mode,
    )
    return json_response(
        await chat_resource(state, chat, config), 201, {"Location": f"/api/chats/{chat.id}"}
    )


@router.get("")
async def list_chats(
    request: Request,
    user: User,
    archived: Literal["false", "true", "all"] = "false",
    limit: Annotated[int, Field(ge=1, le=200), ASCII_DIGITS] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    q: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The caller's chats, most recently updated first (keyset pagination); `q` matches
    titles (case-insensitive), `archived=all` lists archived and active chats."""
    state = app_state(request)
    page = await state.store.list_chats(
        user.user_id,
        archived=None if archived == "all" else archived == "true",
        limit=limit,
        cursor=cursor,
        title_contains=q or None,
    )
    return json_response(
        {"chats": [chat_json(c) for c in page.items], "next_cursor": page.next_cursor}
    )


@router.get("/watch")
async def watch_chats(request: Request, user: User) -> Response:
    """Changes to the caller's chat list over SSE (chat_created, chat_updated, chat_deleted)."""
    state = app_state(request)

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"retry: %d\n\n" % SSE_RETRY_MS
        async for frame in state.list_watch.frames(user.user_id, state.sse_keepalive):
            yield frame

    return SseResponse(body(), write_deadline=state.sse_write_deadline)


@router.get("/models")
async def list_models(request: Request, user: User) -> Response:
    """The model configs a chat can use."""
    configs = await app_state(request).store.list_model_configs()
    return json_response(
        {
            "models": [
                {
                    "id": c.id,
                    "name": c.name,
                    "provider": c.provider,
                    "model": c.model,
                    "context_limit": c.context_limit,
                    "is_default": c.is_default,
                    "provider_tools": c.provider_tools or [],
                }
                for c in configs
                if c.enabled
            ]
        }
    )


@router.get("/{chat_id}")
async def get_chat(chat_id: str, request: Request, user: User) -> Response:
    state = app_state(request)
    return json_response(await chat_resource(state, await owned_chat(state, chat_id, user)))


@router.patch("/{chat_id}")
async def patch_chat(chat_id: str, body: PatchChat, request: Request, user: User) -> Response:
    """Rename or (un)archive a chat, or change its mode (the next turn uses it)."""
    state = app_state(request)
    chat = await owned_chat(state, chat_id, user)
    if "mode" in body.model_fields_set:
        chat = await state.store.set_mode(chat_id, body.mode)
    if body.title is not None:
        chat = await state.store.update_title(chat_id, body.title)
    if body.archived is not None and body.archived != chat.archived:
        chat = await state.store.set_archived(chat_id, body.archived)
    return json_response(await chat_resource(state, chat))


@router.delete("/{chat_id}", status_code=204)
async def delete_chat(chat_id: str, request: Request, user: User) -> Response:
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    deleted = await state.store.delete_chat(chat_id)
    state.hub.close_chat(chat_id, "deleted")
    state.list_watch.publish(deleted, "chat_deleted")
    return Response(status_code=204)
