"""`/v1/responses`: OpenAI's Responses API over chatd's chats (docs/openai.md).

A response is one turn of a chat. Creating one starts a chat (or, with
`previous_response_id` or `conversation`, continues one) and records which turn it
is (`Store.create_response`); everything the response shows — its events, its
output, its usage — is rebuilt from that chat's stream by `ResponseBuilder`, on
whichever replica is asked. Cancel is chatd's interrupt. Nothing here runs a model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from chatd.api.auth import Principal
from chatd.api.deps import User, app_state
from chatd.api.errors import ApiError
from chatd.api.openai._bodies import (
    FunctionCallIn,
    FunctionCallOutputIn,
    FunctionTool,
    MessageIn,
    ReasoningIn,
    ResponseRequest,
)
from chatd.api.openai._errors import OpenAIRoute
from chatd.api.openai._events import Event, ResponseBuilder
from chatd.api.openai._history import Turn, content_text, history_of, message_item
from chatd.api.openai._turns import follow, sse, sse_frame
from chatd.api.openai.models import model_config
from chatd.api.resources import owned_chat
from chatd.api.schemas import json_response
from chatd.api.state import AppState
from chatd.store import BusyBehavior, Chat, StoredResponse, TransitionRejected, new_id
from chatd.types import TextPart, ToolResultPart, ToolResultText

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(
        400,
        "invalid_request",
        message,
        extra={"fields": [{"loc": ["body", param]}]} if param else None,
    )


def _tool_json(tool: FunctionTool) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters or {"type": "object", "properties": {}},
        "strict": tool.strict if tool.strict is not None else False,
    }


def _input_items(key: str, body: ResponseRequest) -> list[dict[str, Any]]:
    """The request's input as the Responses API lists it back (ids included)."""
    raw = (
        [MessageIn(role="user", content=body.input)] if isinstance(body.input, str) else body.input
    )
    items: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        if isinstance(item, ReasoningIn):
            continue
        if isinstance(item, MessageIn):
            items.append(message_item(f"msg_{key}_in{index}", item.role, item.content))
        elif isinstance(item, FunctionCallOutputIn):
            items.append(
                {
                    "id": f"fco_{key}_in{index}",
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": content_text(item.output),
                    "status": "completed",
                }
            )
        else:
            assert isinstance(item, FunctionCallIn)
            items.append(
                {
                    "id": f"fc_{key}_in{index}",
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                    "status": "completed",
                }
            )
    if not items:
        raise _bad("The input has no message or function_call_output item.", "input")
    return items


# What a response shows of its request as the client sent it.
_ECHOED = {
    "model",
    "previous_response_id",
    "background",
    "store",
    "metadata",
    "temperature",
    "top_p",
    "max_output_tokens",
    "user",
}


def response_object(stored: StoredResponse) -> dict[str, Any]:
    """The response as its request made it, before any event (status in_progress)."""
    r = stored.request
    return {
        "id": stored.id,
        "object": "response",
        "created_at": int(stored.created_at.timestamp()),
        "model": r["model"],
        "status": "in_progress",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": r["tools"],
        "instructions": r.get("instructions"),
        "previous_response_id": r.get("previous_response_id"),
        "conversation": {"id": stored.chat_id},
        "background": r["background"],
        "store": r["store"],
        "metadata": r.get("metadata") or {},
        "temperature": r.get("temperature"),
        "top_p": r.get("top_p"),
        "max_output_tokens": r.get("max_output_tokens"),
        "user": r.get("user"),
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "error": None,
        "incomplete_details": None,
        "usage": None,
    }


def builder_for(stored: StoredResponse) -> ResponseBuilder:
    tools = (tool["name"] for tool in stored.request["tools"])
    return ResponseBuilder(response_object(stored), stored.after_seq, stored.position, tools)


def _dynamic(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": t["name"], "description": t["description"] or "", "input_schema": t["parameters"]}
        for t in tools
    ]


async def _continue(
    state: AppState,
    chat: Chat,
    body: ResponseRequest,
    items: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    user: Principal,
    model_config_id: str | None,
) -> int:
    """The next turn of `chat` (the client's function results, or its new message);
    the position of the message that starts it."""
    if body.instructions is not None and body.instructions != chat.system_prompt:
        raise _bad(
            "A chat keeps the instructions it was created with; send the same instructions "
            "or none, or start a new response without previous_response_id.",
            "instructions",
        )
    chat_tools = sorted(t["name"] for t in chat.tool_config.get("dynamic", []))
    if tools and sorted(t["name"] for t in tools) != chat_tools:
        raise _bad(
            f"A chat keeps the tools it was created with ({', '.join(chat_tools) or 'none'}); "
            "send the same tools or none.",
            "tools",
        )
    outputs = [i for i in items if i["type"] == "function_call_output"]
    if outputs:
        if len(outputs) != len(items):
            raise _bad("Send function_call_output items alone, then the next message.", "input")
        results = [
            ToolResultPart(tool_call_id=i["call_id"], output=ToolResultText(i["output"]))
            for i in outputs
        ]
        return (await state.store.complete_requires_action(chat.id, results)).last_position
    if any(i["type"] != "message" or i["role"] != "user" for i in items):
        raise _bad(
            "Continuing a chat takes user messages or function_call_output items only.", "input"
        )
    parts: list[Any] = [TextPart(i["content"][0]["text"]) for i in items]
    result = await state.store.send_message(
        chat.id,
        parts,
        busy_behavior=BusyBehavior.QUEUE,
        created_by=user.user_id,
        model_config_id=model_config_id,
    )
    if result.queued is not None:
        await state.store.delete_queued_message(chat.id, result.queued.id)
        raise ApiError(
            409,
            "conflict",
            "The chat's previous response is still in progress or waits for "
            "function_call_output items; wait for it, cancel it, or send those outputs.",
        )
    assert result.message is not None
    return result.message.position


async def _chat_to_continue(state: AppState, body: ResponseRequest, user: Principal) -> Chat | None:
    if body.previous_response_id is not None and body.conversation is not None:
        raise _bad("Send previous_response_id or conversation, not both.", "conversation")
    if body.previous_response_id is not None:
        previous = await state.store.get_response(body.previous_response_id, owner_id=user.user_id)
        if await state.store.latest_response_id(previous.chat_id) != previous.id:
            raise _bad(
                "chatd continues a chat from its latest response only; pass that one.",
                "previous_response_id",
            )
        return await owned_chat(state, previous.chat_id, user)
    if body.conversation is not None:
        conversation = body.conversation
        chat_id = conversation if isinstance(conversation, str) else conversation.id
        return await owned_chat(state, chat_id, user)
    return None


@router.post("/responses")
async def create_response(body: ResponseRequest, request: Request, user: User) -> Response:
    """Start a turn (a new chat, or the next turn of one) and answer as a response."""
    state = app_state(request)
    config = await model_config(state, body.model)
    response_id = "resp_" + new_id().replace("-", "")
    items = _input_items(response_id.removeprefix("resp_"), body)
    tools = [_tool_json(t) for t in body.tools]
    chat = await _chat_to_continue(state, body, user)
    instructions = body.instructions
    if chat is None:
        turn: Turn = history_of(items, instructions)
        instructions = turn.system_prompt
        created = await state.store.create_chat(
            user.user_id,
            turn.message,
            model_config_id=config.id if config is not None else None,
            tool_config={"dynamic": _dynamic(tools)} if tools else None,
            system_prompt=instructions,
            prior=turn.prior,
        )
        chat_id, after_seq, position = created.id, 0, created.last_position
    else:
        config_id = config.id if config is not None else None
        position = await _continue(state, chat, body, items, tools, user, config_id)
        chat_id, after_seq = chat.id, chat.seq_reserved
        instructions = chat.system_prompt
    record = body.model_dump(mode="json", include=_ECHOED)
    record.update(input=items, tools=tools, instructions=instructions)
    stored = await state.store.create_response(
        response_id, chat_id, user.user_id, after_seq=after_seq, position=position, request=record
    )
    builder = builder_for(stored)
    if body.stream:
        return await sse(state, builder, chat_id, _responses_sse(-1))
    if not body.background:
        await follow(state, builder, chat_id)
    return json_response(builder.snapshot())


def _responses_sse(starting_after: int) -> Callable[[Iterable[Event]], bytes]:
    def render(events: Iterable[Event]) -> bytes:
        return b"".join(
            sse_frame(event, event["type"]) for number, event in events if number > starting_after
        )

    return render


async def _stored(state: AppState, response_id: str, user: Principal) -> StoredResponse:
    return await state.store.get_response(response_id, owner_id=user.user_id)


@router.get("/responses/{response_id}")
async def retrieve_response(
    response_id: str,
    request: Request,
    user: User,
    stream: bool = False,
    starting_after: Annotated[int, Query(ge=0)] | None = None,
    include_obfuscation: bool | None = None,
) -> Response:
    """The response as far as its turn has got; with `stream=true` its events (from
    after `starting_after`) until it ends."""
    state = app_state(request)
    stored = await _stored(state, response_id, user)
    builder = builder_for(stored)
    if stream:
        after = -1 if starting_after is None else starting_after
        return await sse(state, builder, stored.chat_id, _responses_sse(after))
    await follow(state, builder, stored.chat_id, live=False)
    return json_response(builder.snapshot())


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request, user: User) -> Response:
    """Interrupt the response's turn; what it produced so far is kept."""
    state = app_state(request)
    stored = await _stored(state, response_id, user)
    builder = builder_for(stored)
    await follow(state, builder, stored.chat_id, live=False)
    if builder.done:
        if builder.status == "cancelled":
            return json_response(builder.snapshot())
        raise _bad(f"Only an in-progress response can be cancelled; this one is {builder.status}.")
    with contextlib.suppress(TransitionRejected):  # it ended meanwhile: say how
        await state.store.interrupt(stored.chat_id)
    builder = builder_for(stored)
    await follow(state, builder, stored.chat_id)
    return json_response(builder.snapshot())


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request, user: User) -> Response:
    """Forget the response; its chat and messages stay (delete the chat to remove them)."""
    state = app_state(request)
    await state.store.delete_response(response_id, owner_id=user.user_id)
    return json_response({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    user: User,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    include: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The items the request that created the response sent."""
    stored = await _stored(app_state(request), response_id, user)
    items = list(stored.request["input"])
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
