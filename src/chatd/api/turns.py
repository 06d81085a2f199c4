"""What acts on one chat's conversation (service spec §6.4): its history, send, edit,
interrupt, client tool results, the queue, compaction, clear, and its live stream.

Every handler checks the caller owns the chat, validates its input and calls one
store transition or read; the store's refusals become HTTP errors in
`chatd.api.errors`. No handler compares statuses or writes SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import Field

from chatd.api.auth import Principal
from chatd.api.deps import IdempotencyKey, User, app_state
from chatd.api.errors import ApiError
from chatd.api.resources import chat_resource, follow_stream, model_config_named, owned_chat
from chatd.api.schemas import (
    ASCII_DIGITS,
    ApprovePlan,
    EditMessage,
    Int64,
    SendMessage,
    ToolOutput,
    ToolResults,
    json_response,
)
from chatd.api.sse import sse_response
from chatd.api.state import AppState
from chatd.store import BusyBehavior, Chat, Store
from chatd.stream.events import pending_tool_calls
from chatd.stream.wire import message_json, queued_json
from chatd.tools import ASK_USER_QUESTION, answer_problem
from chatd.types import (
    TextPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultPart,
    ToolResultText,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/chats", tags=["chats"])


@router.get("/{chat_id}/messages")
async def list_messages(
    chat_id: str,
    request: Request,
    user: User,
    after_position: Int64 = 0,
    limit: Annotated[int, Field(ge=1, le=1000), ASCII_DIGITS] = 1000,
    include_hidden: bool = False,
) -> Response:
    """History in position order, and the stream seq to resume from without gaps."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    last_seq = await state.store.last_event_seq(chat_id)
    messages = await state.store.list_messages(
        chat_id, include_hidden=include_hidden, after_position=after_position, limit=limit + 1
    )
    return json_response(
        {
            "messages": [message_json(m) for m in messages[:limit]],
            "has_more": len(messages) > limit,
            "last_seq": last_seq,
        }
    )


@router.post("/{chat_id}/messages")
async def send_message(
    chat_id: str,
    body: SendMessage,
    request: Request,
    user: User,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Send a message: it starts a turn, waits in the queue, or interrupts (busy_behavior)."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    config = await model_config_named(state, body.model)
    result = await state.store.send_message(
        chat_id,
        body.parts(),
        busy_behavior=BusyBehavior(body.busy_behavior),
        created_by=user.user_id,
        model_config_id=config.id if config is not None else None,
        request_key=idempotency_key,
    )
    return json_response(
        {
            "chat": await chat_resource(state, result.chat, config),
            "message": message_json(result.message) if result.message else None,
            "queued_message": queued_json(result.queued) if result.queued else None,
        }
    )


@router.post("/{chat_id}/plan/approve")
async def approve_plan(
    chat_id: str, request: Request, user: User, body: ApprovePlan | None = None
) -> Response:
    """Approve the proposed plan: the chat leaves plan mode and the approval message
    starts (or queues) the turn that carries it out with every tool (409 when the chat
    is not in plan mode)."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    approval = body or ApprovePlan()
    result = await state.store.send_message(
        chat_id, [TextPart(approval.message)], created_by=user.user_id, approve_plan=True
    )
    return json_response(
        {
            "chat": await chat_resource(state, result.chat),
            "message": message_json(result.message) if result.message else None,
            "queued_message": queued_json(result.queued) if result.queued else None,
        }
    )


@router.patch("/{chat_id}/messages/{message_id}")
async def edit_message(
    chat_id: str, message_id: str, body: EditMessage, request: Request, user: User
) -> Response:
    """Replace a user message; everything after it is dropped and the turn reruns. Its
    files stay unless `file_ids` names the new set."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    result = await state.store.edit_message(
        chat_id,
        message_id,
        body.parts(),
        created_by=user.user_id,
        keep_files=body.file_ids is None,
    )
    return json_response(
        {
            "chat": await chat_resource(state, result.chat),
            "message": message_json(result.message) if result.message else None,
        }
    )


@router.post("/{chat_id}/interrupt")
async def interrupt(chat_id: str, request: Request, user: User) -> Response:
    """Stop the running turn; what was produced so far is kept."""
    return await _transition(request, chat_id, user, lambda store: store.interrupt(chat_id))


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


async def _check_answers(state: AppState, chat: Chat, body: ToolResults) -> None:
    """A text answer to an `ask_user_question` call that offered choices is one of them
    (422 otherwise); an error result declines the question."""
    questions = {
        c["tool_call_id"]: c["args"]
        for c in pending_tool_calls((await state.store.chat_details(chat)).messages)
        if c["tool_name"] == ASK_USER_QUESTION
    }
    for result in body.results:
        if result.tool_call_id in questions and result.output.type == "text":
            problem = answer_problem(questions[result.tool_call_id], result.output.text or "")
            if problem is not None:
                raise ApiError(422, "invalid_tool_results", problem)


@router.post("/{chat_id}/tool-results")
async def submit_tool_results(
    chat_id: str, body: ToolResults, request: Request, user: User
) -> Response:
    """Results of the client-side tool calls a requires_action chat waits for."""
    state = app_state(request)
    chat = await owned_chat(state, chat_id, user)
    await _check_answers(state, chat, body)
    results = [
        ToolResultPart(tool_call_id=r.tool_call_id, output=_output(r.output)) for r in body.results
    ]
    chat = await state.store.complete_requires_action(chat_id, results)
    return json_response({"chat": await chat_resource(state, chat)})


@router.get("/{chat_id}/queue")
async def get_queue(chat_id: str, request: Request, user: User) -> Response:
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    queue = await state.store.list_queued_messages(chat_id)
    return json_response({"queued_messages": [queued_json(q) for q in queue]})


@router.delete("/{chat_id}/queue/{queued_id}")
async def delete_queued(chat_id: str, queued_id: str, request: Request, user: User) -> Response:
    return await _transition(
        request, chat_id, user, lambda store: store.delete_queued_message(chat_id, queued_id)
    )


@router.post("/{chat_id}/queue/{queued_id}/promote")
async def promote_queued(chat_id: str, queued_id: str, request: Request, user: User) -> Response:
    return await _transition(
        request, chat_id, user, lambda store: store.promote_queued_message(chat_id, queued_id)
    )


@router.post("/{chat_id}/compact")
async def compact(chat_id: str, request: Request, user: User) -> Response:
    """Summarise the history now (the worker runs the compaction)."""
    return await _transition(
        request, chat_id, user, lambda store: store.request_compaction(chat_id)
    )


@router.post("/{chat_id}/clear")
async def clear(chat_id: str, request: Request, user: User) -> Response:
    """Start fresh: the model forgets the history, the user still sees it."""
    return await _transition(request, chat_id, user, lambda store: store.clear_context(chat_id))


@router.get("/{chat_id}/stream")
async def stream(
    chat_id: str,
    request: Request,
    user: User,
    after: Int64 | None = None,
    last_event_id: Annotated[Int64 | None, Header()] = None,
) -> Response:
    """The chat's live events over SSE; resume with Last-Event-ID or ?after=SEQ.

    A cursor the chat's log has not reached (above every seq it ever reserved) gets a
    `history_reset` and the whole retained log, like one below what was pruned."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    cursor = last_event_id if last_event_id is not None else (after or 0)
    subscription = await follow_stream(state, chat_id, cursor)
    return sse_response(
        subscription, keepalive=state.sse_keepalive, write_deadline=state.sse_write_deadline
    )


async def _transition(
    request: Request, chat_id: str, user: Principal, act: Callable[[Store], Awaitable[Chat]]
) -> Response:
    """The shape of a route that changes one chat: ownership (404 for anyone else),
    the store's transition, the chat's resource."""
    state = app_state(request)
    await owned_chat(state, chat_id, user)
    return json_response({"chat": await chat_resource(state, await act(state.store))})
