"""The chat routes (service spec §6.4): create, list, read, send, edit, interrupt, stream…

Every handler validates its input, calls exactly one store transition or read, and
maps the store's refusals to the documented error shape in one place
(`_store_errors`). No handler compares statuses or writes SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from chatd.api.app import SSE_RETRY_MS, AppState, SseResponse, User, _state, sse_response
from chatd.api.auth import Principal
from chatd.api.errors import ApiError
from chatd.store import (
    BusyBehavior,
    Chat,
    InvalidRequest,
    ModelConfig,
    NotFound,
    TransitionRejected,
)
from chatd.stream import StoreLog
from chatd.stream.events import pending_tool_calls
from chatd.stream.wire import chat_json, message_json, queued_json, timestamp
from chatd.tools import (
    PROCESS_TOOL_NAMES,
    ToolConfigError,
    allowed_builtin_tools,
    effective_tool_policy,
)
from chatd.tools import ToolConfig as ToolSelectionConfig
from chatd.types import (
    TextPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultPart,
    ToolResultText,
    encode,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/chats", tags=["chats"])

# 256 KiB of UTF-8 per message (spec §6.6).
MAX_MESSAGE_BYTES = 256 * 1024
# Spec §3.2 `[a-z0-9_-]{1,32}`, without a leading '_'/'-' or a double '_': the model
# sees `<slug>__<tool>`, which must split back unambiguously.
McpSlug = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=32, pattern=r"^[a-z0-9](?:[a-z0-9-]|_[a-z0-9-])*_?$"
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("the message must not be empty")
    if len(value.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the message must be at most {MAX_MESSAGE_BYTES} bytes")
    return value


class DynamicToolSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=4096)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolConfig(_Strict):
    """Which tools the chat's runs get. Built-in tools run commands and edit files in the
    chat's workspace on the server, so they are opt-in: `"builtin": "all"` or a list."""

    builtin: Literal["all"] | list[str] | None = None
    mcp_servers: list[McpSlug] | None = Field(default=None, max_length=64)
    dynamic: list[DynamicToolSpec] = Field(default_factory=list, max_length=64)
    stop_after: list[str] = Field(default_factory=list)
    exclusive: list[str] = Field(default_factory=list)


class CreateChat(_Strict):
    message: str
    model: str | None = Field(default=None, max_length=256)
    title: str | None = Field(default=None, min_length=1, max_length=256)
    tools: ToolConfig | None = None
    system_prompt: str | None = Field(default=None, max_length=65536)

    _text = field_validator("message")(_check_text)


class SendMessage(_Strict):
    message: str
    busy_behavior: Literal["queue", "interrupt"] = "queue"
    model: str | None = Field(default=None, max_length=256)

    _text = field_validator("message")(_check_text)


class EditMessage(_Strict):
    message: str

    _text = field_validator("message")(_check_text)


class ToolOutput(_Strict):
    type: Literal["text", "error", "media"]
    text: str | None = None
    error: str | None = None
    data: str | None = None
    media_type: str | None = None


class ToolResultIn(_Strict):
    tool_call_id: str = Field(min_length=1, max_length=256)
    output: ToolOutput


class ToolResults(_Strict):
    results: list[ToolResultIn] = Field(min_length=1, max_length=64)


class PatchChat(_Strict):
    title: str | None = Field(default=None, min_length=1, max_length=256)
    archived: bool | None = None


@contextlib.contextmanager
def _store_errors(what: str = "chat") -> Iterator[None]:
    """The one place store refusals become HTTP errors (spec §6.1, §2.6)."""
    try:
        yield
    except NotFound as err:
        raise ApiError.not_found(err.what if err.what != "chat" else what) from None
    except TransitionRejected as err:
        body = err.to_dict()
        raise ApiError(
            409,
            body.pop("kind"),
            body.pop("message"),
            body.pop("detail"),
            extra=body,
        ) from None
    except InvalidRequest as err:
        status = 409 if err.kind == "conflict" else 422
        raise ApiError(status, err.kind, err.message) from None


async def _owned(state: AppState, chat_id: str, user: Any) -> Chat:
    with _store_errors():
        return await state.store.get_chat(chat_id, owner_id=user.user_id)


async def _model_config(state: AppState, reference: str | None) -> ModelConfig | None:
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


async def _check_mcp_servers(state: AppState, slugs: list[str]) -> None:
    """Every slug names a configured MCP server (422 otherwise). Only chats that name
    servers pay for this read."""
    known = {server.slug for server in await state.store.list_mcp_servers(slugs)}
    unknown = sorted(set(slugs) - known)
    if unknown:
        raise ApiError(
            422,
            "invalid_request",
            "Name only MCP servers an admin has configured in tools.mcp_servers.",
            f"unknown MCP servers {unknown}",
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


NO_USAGE: dict[str, int | None] = {
    "input_tokens": 0,
    "output_tokens": 0,
    "total_tokens": 0,
    "reasoning_tokens": 0,
    "cache_creation_tokens": 0,
    "cache_read_tokens": 0,
    "cost_micros": None,
}


async def _full(state: AppState, chat: Chat, config: ModelConfig | None = None) -> dict[str, Any]:
    """The full chat resource; `config`, when the route already read it, saves a read."""
    # The chat row counts its queue: an empty one needs no read (most chats, most calls).
    queue = await state.store.list_queued_messages(chat.id) if chat.queue_length else []
    return chat_json(
        chat,
        queue=queue,
        model=await _model_name(state, chat, config),
        requires_action=await _requires_action(state, chat),
        # A chat just created has run no step: nothing to add up.
        usage=NO_USAGE if chat.snapshot_version == 1 else await state.store.usage_totals(chat.id),
    )


async def _requires_action(state: AppState, chat: Chat) -> dict[str, Any] | None:
    """The `action_required` payload while the chat waits for client tools (spec §6.3)."""
    if chat.requires_action_deadline_at is None:
        return None
    calls = pending_tool_calls(await state.store.list_messages(chat.id))
    return (
        {"tool_calls": calls, "deadline_at": timestamp(chat.requires_action_deadline_at)}
        if calls
        else None
    )


async def _model_name(state: AppState, chat: Chat, known: ModelConfig | None) -> str | None:
    if known is not None and known.id == chat.model_config_id:
        return f"{known.provider}:{known.model}"
    with contextlib.suppress(NotFound):
        config = await state.store.get_model_config(chat.model_config_id)
        return f"{config.provider}:{config.model}"
    return None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        encode(body), status_code=status, media_type="application/json", headers=headers
    )


@router.post("", status_code=201)
async def create_chat(body: CreateChat, request: Request, user: User) -> Response:
    """Start a chat with its first message; a worker picks it up at once."""
    state = _state(request)
    config = await _model_config(state, body.model)
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
    with _store_errors():
        chat = await state.store.create_chat(
            user.user_id,
            [TextPart(body.message)],
            title=body.title,
            model_config_id=config.id if config is not None else None,
            tool_config=tools,
            system_prompt=body.system_prompt,
            request_key=request.headers.get("idempotency-key"),
        )
    return _json(await _full(state, chat, config), 201, {"Location": f"/api/chats/{chat.id}"})


@router.get("")
async def list_chats(
    request: Request,
    user: User,
    archived: Literal["false", "true", "all"] = "false",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    q: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The caller's chats, most recently updated first (keyset pagination); `q` matches
    titles (case-insensitive), `archived=all` lists archived and active chats."""
    state = _state(request)
    with _store_errors():
        page = await state.store.list_chats(
            user.user_id,
            archived=None if archived == "all" else archived == "true",
            limit=limit,
            cursor=cursor,
            title_contains=q or None,
        )
    return _json({"chats": [chat_json(c) for c in page.items], "next_cursor": page.next_cursor})


@router.get("/watch")
async def watch_chats(request: Request, user: User) -> Response:
    """Changes to the caller's chat list over SSE (chat_created, chat_updated, chat_deleted)."""
    state = _state(request)

    async def body() -> AsyncGenerator[bytes, None]:
        yield b"retry: %d\n\n" % SSE_RETRY_MS
        async for frame in state.list_watch.frames(user.user_id, state.sse_keepalive):
            yield frame

    return SseResponse(body(), write_deadline=state.sse_write_deadline)


@router.get("/models")
async def list_models(request: Request, user: User) -> Response:
    """The model configs a chat can use."""
    configs = await _state(request).store.list_model_configs()
    return _json(
        {
            "models": [
                {
                    "id": c.id,
                    "name": c.name,
                    "provider": c.provider,
                    "model": c.model,
                    "context_limit": c.context_limit,
                    "is_default": c.is_default,
                }
                for c in configs
                if c.enabled
            ]
        }
    )


@router.get("/{chat_id}")
async def get_chat(chat_id: str, request: Request, user: User) -> Response:
    state = _state(request)
    return _json(await _full(state, await _owned(state, chat_id, user)))


@router.patch("/{chat_id}")
async def patch_chat(chat_id: str, body: PatchChat, request: Request, user: User) -> Response:
    """Rename or (un)archive a chat."""
    state = _state(request)
    chat = await _owned(state, chat_id, user)
    with _store_errors():
        if body.title is not None:
            chat = await state.store.update_title(chat_id, body.title)
        if body.archived is not None and body.archived != chat.archived:
            chat = await state.store.set_archived(chat_id, body.archived)
    return _json(await _full(state, chat))


@router.delete("/{chat_id}", status_code=204)
async def delete_chat(chat_id: str, request: Request, user: User) -> Response:
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors():
        deleted = await state.store.delete_chat(chat_id)
    state.hub.close_chat(chat_id, "deleted")
    state.list_watch.publish(deleted, "chat_deleted")
    return Response(status_code=204)


@router.get("/{chat_id}/messages")
async def list_messages(
    chat_id: str,
    request: Request,
    user: User,
    after_position: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    include_hidden: bool = False,
) -> Response:
    """History in position order, and the stream seq to resume from without gaps."""
    state = _state(request)
    await _owned(state, chat_id, user)
    last_seq = await state.store.last_event_seq(chat_id)
    messages = await state.store.list_messages(
        chat_id, include_hidden=include_hidden, after_position=after_position, limit=limit + 1
    )
    return _json(
        {
            "messages": [message_json(m) for m in messages[:limit]],
            "has_more": len(messages) > limit,
            "last_seq": last_seq,
        }
    )


@router.post("/{chat_id}/messages")
async def send_message(chat_id: str, body: SendMessage, request: Request, user: User) -> Response:
    """Send a message: it starts a turn, waits in the queue, or interrupts (busy_behavior)."""
    state = _state(request)
    await _owned(state, chat_id, user)
    config = await _model_config(state, body.model)
    with _store_errors():
        result = await state.store.send_message(
            chat_id,
            [TextPart(body.message)],
            busy_behavior=BusyBehavior(body.busy_behavior),
            created_by=user.user_id,
            model_config_id=config.id if config is not None else None,
            request_key=request.headers.get("idempotency-key"),
        )
    return _json(
        {
            "chat": await _full(state, result.chat, config),
            "message": message_json(result.message) if result.message else None,
            "queued_message": queued_json(result.queued) if result.queued else None,
        }
    )


@router.patch("/{chat_id}/messages/{message_id}")
async def edit_message(
    chat_id: str, message_id: str, body: EditMessage, request: Request, user: User
) -> Response:
    """Replace a user message; everything after it is dropped and the turn reruns."""
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors("message"):
        result = await state.store.edit_message(
            chat_id, message_id, [TextPart(body.message)], created_by=user.user_id
        )
    return _json(
        {
            "chat": await _full(state, result.chat),
            "message": message_json(result.message) if result.message else None,
        }
    )


@router.post("/{chat_id}/interrupt")
async def interrupt(chat_id: str, request: Request, user: User) -> Response:
    """Stop the running turn; what was produced so far is kept."""
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors():
        chat = await state.store.interrupt(chat_id)
    return _json({"chat": await _full(state, chat)})


def _output(output: ToolOutput) -> ToolResultOutput:
    if output.type == "text":
        return ToolResultText(output.text or "")
    if output.type == "error":
        return ToolResultError(output.error or "the client tool failed")
    if not output.data or not output.media_type:
        raise ApiError(
            422, "invalid_tool_results", "A media result needs data (base64) and media_type."
        )
    return ToolResultMedia(data=output.data, media_type=output.media_type, text=output.text or "")


@router.post("/{chat_id}/tool-results")
async def submit_tool_results(
    chat_id: str, body: ToolResults, request: Request, user: User
) -> Response:
    """Results of the client-side tool calls a requires_action chat waits for."""
    state = _state(request)
    await _owned(state, chat_id, user)
    results = [
        ToolResultPart(tool_call_id=r.tool_call_id, output=_output(r.output)) for r in body.results
    ]
    with _store_errors():
        chat = await state.store.complete_requires_action(chat_id, results)
    return _json({"chat": await _full(state, chat)})


@router.get("/{chat_id}/queue")
async def get_queue(chat_id: str, request: Request, user: User) -> Response:
    state = _state(request)
    await _owned(state, chat_id, user)
    queue = await state.store.list_queued_messages(chat_id)
    return _json({"queued_messages": [queued_json(q) for q in queue]})


@router.delete("/{chat_id}/queue/{queued_id}")
async def delete_queued(chat_id: str, queued_id: str, request: Request, user: User) -> Response:
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors("queued message"):
        chat = await state.store.delete_queued_message(chat_id, queued_id)
    return _json({"chat": await _full(state, chat)})


@router.post("/{chat_id}/queue/{queued_id}/promote")
async def promote_queued(chat_id: str, queued_id: str, request: Request, user: User) -> Response:
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors("queued message"):
        chat = await state.store.promote_queued_message(chat_id, queued_id)
    return _json({"chat": await _full(state, chat)})


@router.post("/{chat_id}/compact")
async def compact(chat_id: str, request: Request, user: User) -> Response:
    """Summarise the history now (the worker runs the compaction)."""
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors():
        chat = await state.store.request_compaction(chat_id)
    return _json({"chat": await _full(state, chat)})


@router.post("/{chat_id}/clear")
async def clear(chat_id: str, request: Request, user: User) -> Response:
    """Start fresh: the model forgets the history, the user still sees it."""
    state = _state(request)
    await _owned(state, chat_id, user)
    with _store_errors():
        chat = await state.store.clear_context(chat_id)
    return _json({"chat": await _full(state, chat)})


@router.get("/{chat_id}/stream")
async def stream(
    chat_id: str,
    request: Request,
    user: User,
    after: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The chat's live events over SSE; resume with Last-Event-ID or ?after=SEQ."""
    state = _state(request)
    await _owned(state, chat_id, user)
    if state.draining:
        raise ApiError(
            503,
            "unavailable",
            "The server is shutting down; reconnect.",
            headers={"Retry-After": "1"},
        )
    raw = last_event_id if last_event_id is not None else after
    cursor = 0
    if raw is not None:
        if not raw.strip().isdigit():
            raise ApiError(
                422,
                "invalid_request",
                "The resume cursor must be a non-negative integer.",
                f"got {raw!r}",
            )
        cursor = int(raw)
    subscription = state.hub.subscribe(chat_id, cursor, StoreLog(state.store))
    if state.follow_chat is not None:
        try:
            await state.follow_chat(chat_id)
        except BaseException:
            subscription.close()
            raise
    return sse_response(
        subscription, keepalive=state.sse_keepalive, write_deadline=state.sse_write_deadline
    )
