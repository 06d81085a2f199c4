"""`chatd chat`: the interactive terminal session.

Reads a line, sends it, and renders the turn live (rich `Live`) from the chat's SSE
stream until the chat is idle again. Ctrl-C during a turn interrupts the turn (POST
…/interrupt), never the client; at the prompt it only reminds how to leave. Lines
starting with `/` are commands (`/help`). A new chat asks for the built-in tools of
`--tools` (`_tools`). Everything goes through the public HTTP API; this module owns
the terminal, `_http` the wire, `_state` the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from chatd.client._http import ApiClient, ApiError
from chatd.client._state import (
    ChatView,
    agent_lines,
    render_message,
    render_preview,
    tool_result_line,
)
from chatd.client._tools import BUILTIN_TOOLS, builtin_label, tools_for_level

__all__ = ["ChatSession"]

HELP = """Commands:
  /attach PATH    upload a file to send with your next message (/attach lists them)
  /queue          show the queued messages
  /models         list the models; /model NAME picks one for the next messages
  /compact        summarise the history now
  /tools          show the chat's built-in tools (chatd chat --tools picks a new chat's)
  /agents         list the chat's agents (the chats it started) with their status
  /open ID        open another of your chats, such as an agent
  /new            start a new chat
  /help           this help
  /quit           leave (Ctrl-D too)
Ctrl-C interrupts a running turn; the client stays open."""

PROMPT = "you> "
# How often a parent waiting for its agents reads their statuses (seconds).
AGENT_POLL = 1.0


@dataclass
class ChatSession:
    api: ApiClient
    console: Console
    chat_id: str | None = None
    model: str | None = None
    tools: str | None = None  # built-in tools level of new chats: none (None), files, all
    view: ChatView | None = None
    _stream_task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _turn_active: bool = False
    _unanswered: set[str] = field(default_factory=set)  # calls printed without a result
    _attached: list[dict[str, Any]] = field(default_factory=list)  # for the next message

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_ctrl_c)
        try:
            me = await self.api.request("GET", "/api/users/me")
            self.console.print(
                f"chatd at {self.api.url} — signed in as [bold]{me['username']}[/bold]. "
                "/help lists the commands."
            )
            if self.chat_id is not None and self.tools is not None:
                self.console.print(
                    "note: --tools is for new chats (/new); this chat keeps its own tools, "
                    "/tools shows them."
                )
            if self.chat_id is not None:
                last_seq = await self._open(self.chat_id, show_history=True)
                view = self.view
                if view is not None and view.busy:
                    # Replaying from the start: caught up, then idle.
                    await self._follow_turn(lambda: view.last_seq >= last_seq and not view.busy)
            while True:
                line = await self._read_line()
                if line is None:
                    break
                if not await self._handle(line.strip()):
                    break
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await self._stop_stream()

    # ------------------------------------------------------------------ input

    async def _read_line(self) -> str | None:
        if self.view is not None and self.view.waiting_for_agents:
            view = self.view  # its agents answer, not the user: follow until they have
            await self._follow_turn(lambda: not view.busy and not view.waiting_for_agents)
            return ""
        if self.view is not None and self.view.status == "requires_action":
            await self._answer_action()
            return ""
        try:
            return await asyncio.to_thread(self.console.input, PROMPT)
        except EOFError:
            self.console.print()
            return None

    def _on_ctrl_c(self) -> None:
        if self._turn_active and self.view is not None and self.chat_id is not None:
            self.view.interrupted = True
            asyncio.get_running_loop().create_task(self._interrupt(self.chat_id))
        else:
            self.console.print("\n(Ctrl-C interrupts a running turn; /quit or Ctrl-D leaves)")
            self.console.print(PROMPT, end="")

    async def _interrupt(self, chat_id: str) -> None:
        try:
            await self.api.request("POST", f"/api/chats/{chat_id}/interrupt")
        except ApiError as err:
            if err.kind != "invalid_state":  # the turn just ended by itself
                self._error(err)

    async def _handle(self, line: str) -> bool:
        """Run one line; False to leave."""
        if not line:
            return True
        if line.startswith("/"):
            return await self._command(line)
        mark = self.view.turn_ends if self.view is not None else 0
        try:
            if self.chat_id is None:
                body: dict[str, Any] = {"message": line, **self._file_ids()}
                if self.model:
                    body["model"] = self.model
                if builtin := tools_for_level(self.tools or "none"):
                    body["tools"] = {"builtin": builtin}
                chat = await self.api.request("POST", "/api/chats", body)
                await self._open(chat["id"], show_history=False)
            else:
                body = {"message": line, "busy_behavior": "queue", **self._file_ids()}
                if self.model:
                    body["model"] = self.model
                await self.api.request("POST", f"/api/chats/{self.chat_id}/messages", body)
        except ApiError as err:
            self._error(err)
            return True
        self._attached.clear()
        await self._follow_turn(self._turn_ended_after(mark))
        return True

    def _turn_ended_after(self, mark: int) -> Callable[[], bool]:
        view = self.view
        assert view is not None
        return lambda: view.turn_ends > mark and not view.busy and not view.waiting_for_agents

    async def _command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            if name in ("/quit", "/exit"):
                return False
            if name == "/help":
                self.console.print(HELP)
            elif name == "/models":
                await self._models()
            elif name == "/model":
                await self._pick_model(arg)
            elif name == "/attach":
                await self._attach(arg)
            elif name == "/queue":
                await self._queue()
            elif name == "/tools":
                await self._show_tools()
            elif name == "/agents":
                await self._agents()
            elif name == "/open":
                await self._open_chat(arg)
            elif name == "/compact":
                if self.chat_id is None:
                    self.console.print("No chat yet.")
                else:
                    mark = self.view.turn_ends if self.view is not None else 0
                    await self.api.request("POST", f"/api/chats/{self.chat_id}/compact")
                    self.console.print("Compaction requested.")
                    await self._follow_turn(self._turn_ended_after(mark))
            elif name == "/new":
                await self._stop_stream()
                self.chat_id, self.view = None, None
                self.console.print("New chat: your next message starts it.")
            else:
                self.console.print(f"Unknown command {name}. /help lists the commands.")
        except ApiError as err:
            self._error(err)
        return True

    def _file_ids(self) -> dict[str, list[str]]:
        return {"file_ids": [f["id"] for f in self._attached]} if self._attached else {}

    async def _attach(self, arg: str) -> None:
        """Upload the file now; its id goes with the next message sent."""
        if arg:
            file = await self.api.upload(arg.strip("'\""))
            self._attached.append(file)
            self.console.print(
                f"Attached {file['name']} ({file['media_type']}, {file['size']} bytes); "
                "it goes with your next message.",
                highlight=False,
            )
        elif self._attached:
            names = ", ".join(f["name"] for f in self._attached)
            self.console.print(f"Attached for the next message: {names}", highlight=False)
        else:
            self.console.print(
                "Nothing attached. /attach PATH uploads a file for the next message."
            )

    async def _models(self) -> None:
        models = (await self.api.request("GET", "/api/chats/models"))["models"]
        table = Table("name", "provider:model", "context", "default")
        for m in models:
            table.add_row(
                m["name"],
                f"{m['provider']}:{m['model']}",
                str(m.get("context_limit") or ""),
                "yes" if m["is_default"] else "",
            )
        self.console.print(table)

    async def _pick_model(self, name: str) -> None:
        """`/model NAME`: a model the user can use (name, id or provider:model), checked
        now rather than refused by the next send; `/model` alone: the default."""
        if name:
            models = (await self.api.request("GET", "/api/chats/models"))["models"]
            if not any(
                name in (m["name"], m["id"], f"{m['provider']}:{m['model']}") for m in models
            ):
                names = ", ".join(m["name"] for m in models)
                self.console.print(
                    f"No model named {name!r}; the model stays {self.model or 'the default'}. "
                    f"Choose one of: {names}",
                    markup=False,
                    highlight=False,
                )
                return
        self.model = name or None
        self.console.print(f"Model for the next messages: {self.model or 'the default'}")

    async def _queue(self) -> None:
        if self.chat_id is None:
            self.console.print("No chat yet.")
            return
        queue = (await self.api.request("GET", f"/api/chats/{self.chat_id}/queue"))[
            "queued_messages"
        ]
        if not queue:
            self.console.print("The queue is empty.")
        for n, item in enumerate(queue, start=1):
            text = " ".join(p.get("text", "") for p in item["parts"] if p["type"] == "text")
            self.console.print(f"{n}. {text}")

    async def _show_tools(self) -> None:
        if self.chat_id is None:
            level = self.tools or "none"
            names = ", ".join(tools_for_level(level)) or "no built-in tools"
            self.console.print(Text(f"No chat yet; your next message starts one with {names}."))
            return
        chat = await self.api.request("GET", f"/api/chats/{self.chat_id}")
        tools = chat.get("tools")
        label = builtin_label(tools)
        if not label:
            self.console.print("This chat has no built-in tools.")
            return
        builtin = tools["builtin"]
        names = ", ".join(BUILTIN_TOOLS if builtin == "all" else builtin)
        self.console.print(Text(f"tools: {names if label == names else f'{label} ({names})'}"))

    async def _agents(self) -> None:
        if self.chat_id is None or self.view is None:
            self.console.print("No chat yet.")
            return
        await self._refresh_children(self.view)
        for line in agent_lines(self.view):
            self.console.print(line, highlight=False)

    async def _open_chat(self, chat_id: str) -> None:
        if not chat_id:
            self.console.print(Text("Use: /open CHAT_ID (/agents lists this chat's agents)."))
            return
        await self._open(chat_id, show_history=True)
        view = self.view
        assert view is not None
        self.console.print(Text(f"Opened {view.title or chat_id} [{view.status}]."))
        if view.busy or view.waiting_for_agents:
            await self._follow_turn(lambda: not view.busy and not view.waiting_for_agents)

    async def _refresh_children(self, view: ChatView) -> None:
        """Its agents' statuses, which change with no event of this chat's."""
        chat = await self.api.request("GET", f"/api/chats/{view.id}")
        view.children = chat.get("children") or []
        view.parent_id = chat.get("parent_id")

    async def _answer_action(self) -> None:
        assert self.view is not None and self.view.action is not None
        results = []
        self.console.print("[bold]The model called client tools; answer each one.[/bold]")
        for call in self.view.action["tool_calls"]:
            self.console.print(f"⚙ {call['tool_name']}({call.get('args') or ''})", style="cyan")
            try:
                text = await asyncio.to_thread(self.console.input, "result> ")
            except EOFError:
                text = ""
            results.append(
                {"tool_call_id": call["tool_call_id"], "output": {"type": "text", "text": text}}
            )
        mark = self.view.turn_ends
        try:
            await self.api.request(
                "POST", f"/api/chats/{self.view.id}/tool-results", {"results": results}
            )
        except ApiError as err:
            self._error(err)
            return
        await self._follow_turn(self._turn_ended_after(mark))

    # ------------------------------------------------------------------ the stream

    async def _open(self, chat_id: str, *, show_history: bool) -> int:
        """Load the chat and follow its stream; returns the durable log's last seq."""
        chat = await self.api.request("GET", f"/api/chats/{chat_id}")
        page = await self.api.request("GET", f"/api/chats/{chat_id}/messages")
        await self._stop_stream()  # only once the other chat is there to open
        busy = chat["status"] in ("pending", "running", "interrupting")
        # Busy: replay the retained stream so the step in progress shows from its start.
        view = ChatView(chat, page["messages"], 0 if busy else page["last_seq"])
        if show_history:
            self._print_messages(list(view.messages.values()))
        if not show_history or busy:
            view.messages = {}
        self.chat_id, self.view = chat_id, view
        self._stream_task = asyncio.create_task(self._pump(view))
        last_seq: int = page["last_seq"]
        return last_seq

    async def _pump(self, view: ChatView) -> None:
        async for kind, data in self.api.events(view.id, lambda: view.last_seq):
            if view.apply(kind, data):
                self._changed.set()
            if kind == "chat_deleted":
                return

    async def _stop_stream(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
            self._stream_task = None

    async def _follow_turn(self, done: Callable[[], bool]) -> None:
        """Render the live turn until `done()` (the chat idle, or waiting for client tools)."""
        view = self.view
        assert view is not None
        self._turn_active = True
        loop = asyncio.get_running_loop()
        polled = 0.0
        try:
            with Live(
                render_preview(view), console=self.console, refresh_per_second=12, transient=True
            ) as live:
                while True:
                    self._changed.clear()
                    if view.waiting_for_agents and loop.time() - polled >= AGENT_POLL:
                        polled = loop.time()
                        with contextlib.suppress(ApiError):
                            await self._refresh_children(view)
                    self._print_messages(view.take_committed(), live)
                    live.update(render_preview(view))
                    if done():
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.25):
                            await self._changed.wait()
        finally:
            self._turn_active = False
        self._print_messages(view.take_committed())
        if view.status == "error" and view.error:
            error = view.error
            status = f" HTTP {error['status_code']}" if error.get("status_code") else ""
            self.console.print(
                f"[red]error [{error.get('kind')}]{status}:[/red] {error.get('message')}"
            )
        elif view.interrupted:
            self.console.print("[yellow]Chat interrupted[/yellow]")

    def _print_messages(self, messages: list[dict[str, Any]], live: Live | None = None) -> None:
        if not messages:
            return
        pool = self.view.messages.values() if self.view is not None else messages
        results = {
            p["tool_call_id"]: p.get("result")
            for m in [*pool, *messages]
            for p in m.get("parts", [])
            if p["type"] == "tool_result"
        }
        console = live.console if live is not None else self.console
        for message in sorted(messages, key=lambda m: m["position"]):
            if message["role"] == "tool" and message.get("kind") != "boundary":
                # Normally shown with its call; a call printed earlier gets its result now.
                for part in message.get("parts", []):
                    if part["type"] == "tool_result" and part["tool_call_id"] in self._unanswered:
                        self._unanswered.discard(part["tool_call_id"])
                        console.print(tool_result_line(part["tool_name"], part.get("result")))
                continue
            for part in message.get("parts", []):
                if part["type"] == "tool_call" and part["tool_call_id"] not in results:
                    self._unanswered.add(part["tool_call_id"])
            rendered = render_message(message, results)
            if rendered is not None:
                console.print(rendered)

    def _error(self, err: ApiError) -> None:
        status = f" HTTP {err.status}" if err.status else ""
        # One logical line however long the message: the terminal wraps it, not rich.
        line = " ".join(f"error [{err.kind}]{status}: {err.message}".split())
        self.console.print(Text(line, style="red"), soft_wrap=True)
