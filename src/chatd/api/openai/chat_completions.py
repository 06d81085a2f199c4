"""`/v1/chat/completions`, for clients that only know it: each request is a fresh
turn on a new chat holding the history the client sent (docs/openai.md).

The chat's events go through the same `ResponseBuilder` as a response's; this module
only re-shapes them as chat completion chunks (or one completion).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatd.api.deps import User, app_state
from chatd.api.errors import ApiError
from chatd.api.openai._bodies import ChatCompletionRequest, ChatMessageIn
from chatd.api.openai._errors import OpenAIRoute
from chatd.api.openai._events import Event, ResponseBuilder
from chatd.api.openai._history import content_text, history_of, message_item
from chatd.api.openai._turns import follow, sse, sse_frame
from chatd.api.openai.models import model_config
from chatd.api.schemas import json_response

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

# A chat made for one completion is titled by its first words: no title model call.
_TITLE_CHARS = 80
_CHUNK = "chat.completion.chunk"


def _items(messages: list[ChatMessageIn]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for index, m in enumerate(messages):
        if m.role == "tool":
            call_id = m.tool_call_id or ""
            output = content_text(m.content)
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
            continue
        if m.content or not m.tool_calls:
            items.append(message_item(f"msg_{index}", m.role, m.content or ""))
        for call in m.tool_calls or ():
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
    return items


def _usage(snapshot: dict[str, Any]) -> dict[str, int]:
    usage = snapshot["usage"] or {}
    return {
        "prompt_tokens": usage.get("input_tokens", 0),
        "completion_tokens": usage.get("output_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0),
    }


@router.post("/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, user: User
) -> Response:
    """Run one turn on a new chat and answer as a chat completion (or its chunks)."""
    state = app_state(request)
    config = await model_config(state, body.model)
    turn = history_of(_items(body.messages), None)
    first = " ".join(turn.message[0].text.split()) if hasattr(turn.message[0], "text") else ""
    chat = await state.store.create_chat(
        user.user_id,
        turn.message,
        title=first[:_TITLE_CHARS] or None,
        model_config_id=config.id if config is not None else None,
        system_prompt=turn.system_prompt,
        prior=turn.prior,
    )
    completion_id = f"chatcmpl-{chat.id}"
    head = {"id": completion_id, "created": int(chat.created_at.timestamp()), "model": body.model}
    builder = ResponseBuilder({"id": completion_id}, 0, chat.last_position)
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return await sse(state, builder, chat.id, _chunks(head, builder, usage))
    await follow(state, builder, chat.id)
    snapshot = builder.snapshot()
    if builder.status == "failed":
        error = snapshot["error"] or {}
        raise ApiError(502, error.get("code", "server_error"), error.get("message", ""))
    return json_response(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": builder.text(), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(snapshot),
        }
    )


def _chunks(head: dict[str, Any], builder: ResponseBuilder, include_usage: bool) -> Any:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse_frame({**head, "object": _CHUNK, "choices": [choice], **extra})

    def render(events: Iterable[Event]) -> bytes:
        out = []
        for _, event in events:
            kind = event["type"]
            if kind == "response.created":
                out.append(chunk({"role": "assistant", "content": ""}))
            elif kind == "response.output_text.delta":
                out.append(chunk({"content": event["delta"]}))
            elif kind == "response.failed":
                error = event["response"]["error"] or {}
                out.append(sse_frame({"error": {**error, "type": "server_error"}}))
            elif kind in ("response.completed", "response.incomplete"):
                out.append(chunk({}, "stop"))
                if include_usage:
                    usage = _usage(event["response"])
                    body = {
                        **head,
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": usage,
                    }
                    out.append(sse_frame(body))
                out.append(b"data: [DONE]\n\n")
        return b"".join(out)

    return render
