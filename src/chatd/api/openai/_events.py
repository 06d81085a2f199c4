"""A chat's turn as a Responses API response: chatd's stream events → OpenAI's events.

`ResponseBuilder` reads the chat's events after the response's `after_seq` and
returns, for each, the Responses API events it stands for, numbered from chatd's
seq: event `k` of chatd event `seq` gets `sequence_number = (seq - after_seq) * SPAN
+ k`, and `response.created` / `response.in_progress` are 0 and 1. Replaying the same
log therefore numbers every event the same on every replica, which is what makes
`starting_after` exact. It also keeps the response object those events build up.
Pure: no I/O, no clock.

- the `message` at the response's position (the user's message, or the client's tool
  results) starts the turn; events before it belong to an earlier turn, and
  `response.created` and `response.in_progress` are already out;
- `message_part` `text_delta` / `reasoning_delta`: `output_item.added` (message or
  reasoning) and `content_part.added` when the item opens, then `output_text.delta`
  / `reasoning_text.delta`;
- `message_part` `tool_input_delta` / `tool_call` of a client tool: a `function_call`
  item, `function_call_arguments.delta`, then `.done` and `output_item.done`;
- `message` (an assistant step was committed): the open item is done
  (`output_text.done`, `content_part.done`, `output_item.done`); its usage counts;
- `status` waiting or requires_action: `response.completed`; `response.incomplete`
  with status `cancelled` when the turn was interrupted: it went through
  `interrupting`, or it never ran (only an interrupt takes a pending chat to waiting);
- `status` error, then `error`: `response.failed` with the error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["SPAN", "Event", "ResponseBuilder", "parse_frames"]

# OpenAI events one chatd event can become at most: closing an item is 3 and opening
# the next 2, plus its delta (6); the end is a close and the terminal event (4).
SPAN = 8

Event = tuple[int, dict[str, Any]]
_ENDED = ("waiting", "requires_action")


def parse_frames(chunk: bytes) -> list[dict[str, Any]]:
    """The `data:` objects of the SSE frames in `chunk` (the hub's encoded events)."""
    events = []
    for frame in chunk.split(b"\n\n"):
        start = frame.find(b"data: ")
        if start >= 0:
            events.append(json.loads(frame[start + 6 :]))
    return events


def _usage(messages: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    usages = [m["usage"] for m in messages]
    if not usages:
        return None

    def total(key: str) -> int:
        return sum(int(u.get(key) or 0) for u in usages)

    return {
        "input_tokens": total("input_tokens"),
        "input_tokens_details": {
            "cached_tokens": total("cache_read_tokens"),
            "cache_write_tokens": total("cache_creation_tokens"),
        },
        "output_tokens": total("output_tokens"),
        "output_tokens_details": {"reasoning_tokens": total("reasoning_tokens")},
        "total_tokens": total("total_tokens"),
    }


class _Open:
    """The output item being streamed: its index, id, kind and what it holds so far."""

    __slots__ = ("call_id", "index", "item", "text")

    def __init__(self, index: int, item: dict[str, Any], call_id: str = "") -> None:
        self.index = index
        self.item = item
        self.text = ""
        self.call_id = call_id


class ResponseBuilder:
    """The events and the object of one response, built from its turn's chatd events.

    `response` is the object as the request made it (id, model, tools, …; status
    `in_progress`, no output); `position` is the position of the message that starts
    the turn. `client_tools` are the function tools the client runs:
    calls of other (server-side) tools are not output items.
    """

    def __init__(
        self,
        response: dict[str, Any],
        after_seq: int,
        position: int,
        client_tools: Iterable[str] = (),
    ) -> None:
        self.base = response
        self.after_seq = after_seq
        self.position = position
        self.client_tools = frozenset(client_tools)
        self.key = str(response["id"]).removeprefix("resp_")
        self.status = "in_progress"
        self.started = False
        self.done = False
        # The log no longer reaches back to the turn's start (pruned).
        self.expired = False
        self.output: list[dict[str, Any]] = []
        self.error: dict[str, Any] | None = None
        self._messages: list[dict[str, Any]] = []
        self._open: _Open | None = None
        self._ran = False
        self._cancelling = False
        self._failing = False
        self._events: list[Event] = []
        self._number = 0

    # -- the object ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The response object as the events so far leave it."""
        output = copy.deepcopy(self.output)
        if self._open is not None and self._open.item["type"] != "function_call":
            kind = "output_text" if self._open.item["type"] == "message" else "reasoning_text"
            part = {"type": kind, "text": self._open.text}
            output[self._open.index]["content"] = [
                {**part, "annotations": []} if kind == "output_text" else part
            ]
        return {
            **self.base,
            "status": self.status,
            "output": output,
            "usage": _usage(self._messages),
            "error": self.error,
        }

    def text(self) -> str:
        """The text of every output message, joined (chat completions' `content`)."""
        return "".join(
            part["text"]
            for item in self.output
            if item["type"] == "message"
            for part in item["content"]
        )

    def tool_calls(self) -> list[dict[str, Any]]:
        return [item for item in self.output if item["type"] == "function_call"]

    # -- the events ---------------------------------------------------------

    def opening(self) -> list[Event]:
        created = self.snapshot()
        return [
            (0, {"type": "response.created", "sequence_number": 0, "response": created}),
            (1, {"type": "response.in_progress", "sequence_number": 1, "response": created}),
        ]

    def feed(self, data: dict[str, Any]) -> list[Event]:
        """The Responses API events chatd event `data` (a stream payload) stands for."""
        seq = data.get("seq")
        if seq is None and data.get("type") == "history_reset" and not self.started:
            self.expired = self.done = True
        if self.done or not isinstance(seq, int) or seq <= self.after_seq:
            return []
        self._events, self._number = [], (seq - self.after_seq) * SPAN
        kind = data.get("type")
        if self._failing:
            self._finish("failed", data if kind == "error" else {})
        elif kind == "message" and not self.started:
            self.started = data["message"]["position"] >= self.position
        elif kind == "status" and self.started:
            self._status(str(data.get("status")))
        elif self.started and kind == "message_part" and data.get("role") == "assistant":
            self._part(seq, data["part"])
        elif self.started and kind == "message" and data["message"].get("role") == "assistant":
            self._close()
            self._messages.append(data["message"])
        return self._events

    def _emit(self, type: str, **fields: Any) -> None:
        number = self._number
        self._number += 1
        self._events.append((number, {"type": type, "sequence_number": number, **fields}))

    def _status(self, status: str) -> None:
        if status == "running":
            self._ran = True
        elif status == "interrupting":
            self._cancelling = True
        elif status in _ENDED:
            cancelled = self._cancelling or not self._ran
            self._finish("cancelled" if cancelled else "completed")
        elif status == "error":
            self._close()
            self._failing = True

    def _finish(self, status: str, error: dict[str, Any] | None = None) -> None:
        self._close()
        self.status, self.done = status, True
        if error is not None:
            code = "rate_limit_exceeded" if error.get("kind") == "rate_limit" else "server_error"
            message = error.get("message") or "The model run failed."
            self.error = {"code": code, "message": message}
        event = {"completed": "response.completed", "failed": "response.failed"}
        self._emit(event.get(status, "response.incomplete"), response=self.snapshot())

    def _part(self, seq: int, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if kind == "text_delta":
            self._delta(seq, "message", part["delta"])
        elif kind == "reasoning_delta":
            self._delta(seq, "reasoning", part["delta"])
        elif kind in ("tool_input_delta", "tool_call") and part["tool_name"] in self.client_tools:
            self._call(seq, part)

    def _start(self, seq: int, item: dict[str, Any], call_id: str = "") -> _Open:
        self._close()
        self.output.append(item)
        self._open = _Open(len(self.output) - 1, item, call_id)
        self._emit(
            "response.output_item.added", output_index=self._open.index, item=copy.deepcopy(item)
        )
        return self._open

    def _delta(self, seq: int, kind: str, delta: str) -> None:
        open_ = self._open
        if open_ is None or open_.item["type"] != kind:
            item: dict[str, Any]
            if kind == "message":
                item = {"id": f"msg_{self.key}_{seq}", "type": "message", "role": "assistant"}
                part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
            else:
                item = {"id": f"rs_{self.key}_{seq}", "type": "reasoning", "summary": []}
                part = {"type": "reasoning_text", "text": ""}
            open_ = self._start(seq, {**item, "status": "in_progress", "content": []})
            self._emit(
                "response.content_part.added",
                item_id=item["id"],
                output_index=open_.index,
                content_index=0,
                part=part,
            )
        open_.text += delta
        fields: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        self._emit(
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta",
            item_id=open_.item["id"],
            output_index=open_.index,
            content_index=0,
            delta=delta,
            **fields,
        )

    def _call(self, seq: int, part: dict[str, Any]) -> None:
        call_id = str(part["tool_call_id"])
        open_ = self._open
        if open_ is None or open_.call_id != call_id:
            item = {
                "id": f"fc_{self.key}_{seq}",
                "type": "function_call",
                "call_id": call_id,
                "name": part["tool_name"],
                "arguments": "",
                "status": "in_progress",
            }
            open_ = self._start(seq, item, call_id)
        if part["type"] == "tool_input_delta":
            open_.text += part["delta"]
            self._emit(
                "response.function_call_arguments.delta",
                item_id=open_.item["id"],
                output_index=open_.index,
                delta=part["delta"],
            )
            return
        if not open_.text:
            args = part.get("args")
            open_.text = args if isinstance(args, str) else json.dumps(args)
        self._close()

    def _close(self) -> None:
        """Finish the open item, if any: its done events, its final content."""
        open_, self._open = self._open, None
        if open_ is None:
            return
        item, at = open_.item, {"item_id": open_.item["id"], "output_index": open_.index}
        item["status"] = "completed"
        if item["type"] == "function_call":
            item["arguments"] = open_.text
            self._emit("response.function_call_arguments.done", arguments=open_.text, **at)
        elif item["type"] == "message":
            part = {"type": "output_text", "text": open_.text, "annotations": []}
            item["content"] = [part]
            self._emit(
                "response.output_text.done", content_index=0, text=open_.text, logprobs=[], **at
            )
            self._emit("response.content_part.done", content_index=0, part=part, **at)
        else:
            part = {"type": "reasoning_text", "text": open_.text}
            item["content"] = [part]
            self._emit("response.reasoning_text.done", content_index=0, text=open_.text, **at)
            self._emit("response.content_part.done", content_index=0, part=part, **at)
        self._emit("response.output_item.done", output_index=open_.index, item=copy.deepcopy(item))
