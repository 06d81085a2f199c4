"""One chat as the terminal client sees it, and how it looks in rich.

`ChatView` applies stream events by the client contract of spec §5.2 (seq order,
ignore seq ≤ last applied, drop the preview on a committed step or
`preview_reset`), exactly as the browser's `chatstate.js` does. The rendering
functions turn messages and the live preview into rich renderables. No I/O here.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

__all__ = [
    "BUSY",
    "ChatView",
    "agent_lines",
    "render_message",
    "render_preview",
    "status_line",
    "tool_result_line",
]

BUSY = frozenset({"pending", "running", "interrupting"})


class ChatView:
    def __init__(self, chat: dict[str, Any], messages: list[dict[str, Any]], last_seq: int):
        self.id: str = chat["id"]
        self.status: str = chat["status"]
        self.title: str | None = chat.get("title")
        self.queue: list[dict[str, Any]] = chat.get("queued_messages") or []
        self.retry: dict[str, Any] | None = chat.get("retry_state")
        self.retry_received = time.monotonic()
        self.error: dict[str, Any] | None = chat.get("last_error")
        self.action: dict[str, Any] | None = chat.get("requires_action")
        self.parent_id: str | None = chat.get("parent_id")
        self.children: list[dict[str, Any]] = chat.get("children") or []  # its agents
        self.messages: dict[str, dict[str, Any]] = {m["id"]: m for m in messages}
        self.preview: list[dict[str, Any]] = []
        self.last_seq = last_seq
        self.interrupted = False
        self.reconnecting = False
        self.committed: list[dict[str, Any]] = []  # messages committed since last taken
        self.turn_ends = 0  # how many times the chat went from busy to idle

    @property
    def busy(self) -> bool:
        return self.status in BUSY

    @property
    def waiting_for_agents(self) -> bool:
        """In requires_action only for its agents (`wait_agent`): nothing to answer."""
        return self.status == "requires_action" and self.action is None

    def apply(self, kind: str, data: dict[str, Any]) -> bool:
        """Apply one event; False when its seq was already applied (a replay)."""
        seq = data.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return False
            self.last_seq = seq
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data)
        return True

    def take_committed(self) -> list[dict[str, Any]]:
        committed, self.committed = self.committed, []
        return committed

    def _on_status(self, data: dict[str, Any]) -> None:
        if self.status in BUSY and data["status"] not in BUSY:
            self.turn_ends += 1
        self.status = data["status"]
        if self.status == "interrupting":
            self.interrupted = True
        elif self.status in ("pending", "running"):
            self.interrupted = False
        if self.status != "error":
            self.error = None
        if self.status != "requires_action":
            self.action = None
        if self.status not in BUSY:
            self.retry = None

    def _on_message(self, data: dict[str, Any]) -> None:
        message = data["message"]
        known = self.messages.get(message["id"])
        if known is None or message.get("revision", 0) >= known.get("revision", 0):
            self.messages[message["id"]] = message
            self.committed.append(message)
        if message["role"] != "user":
            self.preview = []

    def _on_message_part(self, data: dict[str, Any]) -> None:
        self.retry = None
        part = data["part"]
        kind = part.get("type")
        tail = self.preview[-1] if self.preview else None
        if kind in ("text_delta", "reasoning_delta"):
            block = "text" if kind == "text_delta" else "reasoning"
            if tail is not None and tail["kind"] == block:
                tail["text"] += part["delta"]
            else:
                self.preview.append({"kind": block, "text": part["delta"]})
        elif kind in ("tool_input_delta", "tool_call", "tool_result"):
            tool = self._tool(part["tool_call_id"], part.get("tool_name", ""))
            if kind == "tool_input_delta":
                tool["input"] += part["delta"]
            elif kind == "tool_call":
                tool["args"] = part.get("args")
            else:
                tool["result"] = part.get("result")

    def _tool(self, call_id: str, name: str) -> dict[str, Any]:
        for block in self.preview:
            if block["kind"] == "tool" and block["id"] == call_id:
                return block
        block = {"kind": "tool", "id": call_id, "name": name, "input": "", "args": None}
        self.preview.append(block)
        return block

    def _on_preview_reset(self, _data: dict[str, Any]) -> None:
        self.preview = []

    def _on_history_reset(self, data: dict[str, Any]) -> None:
        self.preview = []
        keep = data.get("keep_through_position")
        if keep is not None:
            self.messages = {k: m for k, m in self.messages.items() if m["position"] <= keep}

    def _on_queue_update(self, data: dict[str, Any]) -> None:
        self.queue = data["queued_messages"]

    def _on_retry(self, data: dict[str, Any]) -> None:
        self.retry = data
        self.retry_received = time.monotonic()

    def _on_error(self, data: dict[str, Any]) -> None:
        self.error = data

    def _on_action_required(self, data: dict[str, Any]) -> None:
        self.action = data

    def _on_title(self, data: dict[str, Any]) -> None:
        self.title = data.get("title")

    def _on_connection(self, data: dict[str, Any]) -> None:
        self.reconnecting = data.get("state") == "reconnecting"

    def retry_seconds_left(self) -> int:
        if self.retry is None:
            return 0
        deadline = self.retry_received + self.retry.get("delay_ms", 0) / 1000
        at = self.retry.get("retrying_at")
        if isinstance(at, str):
            with contextlib.suppress(ValueError):  # unreadable: keep the delay alone
                wall = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
                deadline = min(deadline, time.monotonic() + wall - time.time())
        return max(0, int(deadline - time.monotonic() + 0.999))


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            return json.dumps(json.loads(value), ensure_ascii=False)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False)


def _result_text(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    if result.get("type") == "text":
        return str(result.get("text", ""))
    if result.get("type") == "error":
        return f"error: {result.get('error', '')}"
    return f"{result.get('media_type', 'media')} attachment"


def _tool_line(name: str, args: Any, result: Any) -> Text:
    line = Text("⚙ ", style="cyan")
    line.append(f"{name}({_pretty(args) if args is not None else ''})", style="cyan")
    if result is not None:
        line.append(f"\n  ↳ {_result_text(result)}", style="green")
    return line


def tool_result_line(name: str, result: Any) -> Text:
    return Text(f"  ↳ {name}: {_result_text(result)}", style="green")


def render_message(message: dict[str, Any], results: dict[str, Any]) -> RenderableType | None:
    """A committed message; tool results are shown with their calls (`results` by call id)."""
    role = message["role"]
    parts = message.get("parts", [])
    if message.get("kind") == "boundary":
        if role != "assistant":
            return None
        call = next((p for p in parts if p["type"] == "tool_call"), None)
        summary = results.get(call["tool_call_id"]) if call else None
        return Panel(_result_text(summary), title="conversation summarized", style="dim")
    if role == "system":
        return None
    if role == "user":
        files = [f"📎 {p['name']} ({p['media_type']})" for p in parts if p["type"] == "file"]
        text = "\n".join([*files, *(p["text"] for p in parts if p["type"] == "text")])
        return Panel(Text(text), title="you", title_align="left", border_style="bold")
    body: list[RenderableType] = []
    for part in parts:
        if part["type"] == "text":
            body.append(Markdown(part["text"]))
        elif part["type"] == "reasoning":
            body.append(Text(part["text"], style="italic dim"))
        elif part["type"] == "tool_call":
            body.append(
                _tool_line(part["tool_name"], part.get("args"), results.get(part["tool_call_id"]))
            )
    if not body:
        return None
    return Panel(Group(*body), title="assistant", title_align="left")


def render_preview(view: ChatView) -> RenderableType:
    body: list[RenderableType] = []
    for block in view.preview:
        if block["kind"] == "text":
            body.append(Markdown(block["text"]))
        elif block["kind"] == "reasoning":
            body.append(
                Text("Thinking… ", style="bold dim") + Text(block["text"], style="italic dim")
            )
        else:
            args = block["args"] if block["args"] is not None else block["input"] or None
            body.append(_tool_line(block["name"], args, block.get("result")))
    body.append(status_line(view))
    return Group(*body)


def status_line(view: ChatView) -> Text:
    line = Text()
    if view.reconnecting:
        line.append("Reconnecting… ", style="yellow")
    if view.retry is not None and view.busy:
        retry = view.retry
        line.append(f"Retrying in {view.retry_seconds_left()} s ", style="yellow bold")
        line.append(f"[{retry.get('kind')}]", style="yellow")
        if retry.get("status_code"):
            line.append(f" HTTP {retry['status_code']}", style="yellow")
        line.append(f" {retry.get('error', '')}")
    elif view.status == "interrupting":
        line.append("Interrupting…", style="yellow")
    elif view.waiting_for_agents:
        working = sum(1 for c in view.children if c["status"] in BUSY)
        line.append(
            f"Waiting for {working} of {len(view.children)} agents… (Ctrl-C interrupts)"
            if working
            else "Waiting for its agents… (Ctrl-C interrupts)",
            style="dim",
        )
        for child in view.children:
            line.append(f"\n  ◦ {child.get('title') or 'Untitled agent'} ", style="dim")
            line.append(f"[{child['status']}]", style="cyan")
    elif view.busy:
        thinking = bool(view.preview) and view.preview[-1]["kind"] == "reasoning"
        line.append("Thinking…" if thinking else "Generating… (Ctrl-C interrupts)", style="dim")
    return line


def agent_lines(view: ChatView) -> list[Text]:
    """`/agents`: the chat's agents (or the chat it is an agent of), with their ids."""
    lines = []
    if view.parent_id:
        lines.append(Text(f"This chat is an agent of {view.parent_id} (/open {view.parent_id})."))
    if not view.children and not view.parent_id:
        lines.append(Text("This chat has no agents."))
    for child in view.children:
        line = Text(f"{child['id']}  ")
        line.append(f"[{child['status']}]", style="cyan")
        line.append(f"  {child.get('title') or 'Untitled agent'}")
        lines.append(line)
    return lines
