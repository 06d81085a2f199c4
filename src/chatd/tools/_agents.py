"""The sub-agent tools: `spawn_agent`, `wait_agent`, `message_agent`, `interrupt_agent`,
`list_agents`.

A chat with built-in tools may start child chats (depth 1: a child cannot start
its own). The tools act through an `AgentHost`, which the worker implements with
the store; `wait_agent` is not run here at all: like a client tool, it ends the
run in `requires_action`, and the store answers it once the children have settled
(chatd.store._agents), so a waiting parent holds no worker slot.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from chatd.core.agents import (
    AGENT_TOOL_NAMES,
    DEFAULT_WAIT_SECONDS,
    INTERRUPT_AGENT,
    LIST_AGENTS,
    MESSAGE_AGENT,
    SPAWN_AGENT,
    WAIT_AGENT,
)
from chatd.loop import Tool, ToolResponse
from chatd.tools._args import Arguments, json_text, make_tool, object_schema
from chatd.tools._selection import DynamicToolSpec, ToolSelection, dynamic_tool

__all__ = [
    "AGENT_DEPTH_ERROR",
    "AgentError",
    "AgentHost",
    "agent_tools",
    "child_unavailable_tools",
    "with_agent_tools",
]

AGENT_DEPTH_ERROR = (
    "{tool}: an agent cannot start or manage agents of its own (agents are one level "
    "deep). Do the work yourself and answer; the chat that started you can start more."
)
MAX_PROMPT_CHARS = 32_000


class AgentError(Exception):
    """A request the host refuses; its message is the tool's error result."""


class AgentHost(Protocol):
    """The chat's children, as the worker reaches them through the store."""

    async def spawn(self, prompt: str, *, model: str | None, title: str | None) -> dict[str, Any]:
        """Start a child chat with `prompt`; its id, title, status and model."""
        ...

    async def message(self, agent_id: str, text: str) -> dict[str, Any]:
        """Send the child a message (queued while it works); its new status."""
        ...

    async def interrupt(self, agent_id: str) -> dict[str, Any]:
        """Stop the child's turn; its new status."""
        ...

    async def list(self) -> list[dict[str, Any]]:
        """Every child: id, title, status, and the answer of a settled one."""
        ...


_WAIT = DynamicToolSpec(
    name=WAIT_AGENT,
    description="Wait until agents finish and get each one's final answer (or its status "
    f"when the timeout passes; default {DEFAULT_WAIT_SECONDS:g} s). Without ids, waits "
    "for every agent of this chat. While you wait, nothing else happens in this chat.",
    input_schema={
        "type": "object",
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The agent ids spawn_agent returned (default: all).",
            },
            "timeout": {
                "type": "string",
                "description": 'How long to wait at most, e.g. "60s" or "10m".',
            },
        },
        "additionalProperties": False,
    },
)


def _describe(err: OSError) -> str:
    return f"the agent tools failed: {err}"


def agent_tools(host: AgentHost) -> list[Tool]:
    """The five tools, `wait_agent` among them as a tool the run never executes."""

    async def spawn(args: Arguments) -> ToolResponse:
        prompt = args.text("prompt")
        if not prompt.strip():
            return ToolResponse.error(f"{SPAWN_AGENT}: the prompt is empty.")
        if len(prompt) > MAX_PROMPT_CHARS:
            return ToolResponse.error(f"{SPAWN_AGENT}: the prompt is over 32,000 characters.")
        model = args.text("model", default="") or None
        title = args.text("title", default="") or None
        return await _answer(host.spawn(prompt, model=model, title=title))

    async def message(args: Arguments) -> ToolResponse:
        text = args.text("message")
        if not text.strip():
            return ToolResponse.error(f"{MESSAGE_AGENT}: the message is empty.")
        return await _answer(host.message(args.text("id"), text))

    async def interrupt(args: Arguments) -> ToolResponse:
        return await _answer(host.interrupt(args.text("id")))

    async def listing(args: Arguments) -> ToolResponse:
        return await _answer(host.list())

    identity = {"id": {"type": "string", "description": "The agent id spawn_agent returned."}}
    return [
        make_tool(
            SPAWN_AGENT,
            "Start an agent: a new chat that works on the prompt on its own, in parallel "
            "with you, in this chat's workspace and with its tools. Returns the agent's id "
            "at once; call wait_agent to get its answer. Give it everything it needs to "
            "know in the prompt: it does not see this conversation.",
            object_schema(
                {
                    "prompt": {"type": "string", "description": "The agent's task."},
                    "model": {
                        "type": "string",
                        "description": "A model configuration id or model name "
                        "(default: this chat's).",
                    },
                    "title": {"type": "string", "description": "A short title for it."},
                },
                ["prompt"],
            ),
            spawn,
            describe_os_error=_describe,
        ),
        dynamic_tool(_WAIT),
        make_tool(
            MESSAGE_AGENT,
            "Send an agent a follow-up message; it starts another turn (or waits its "
            "turn while it is still working). Call wait_agent for the answer.",
            object_schema(
                {**identity, "message": {"type": "string", "description": "The message."}},
                ["id", "message"],
            ),
            message,
            describe_os_error=_describe,
        ),
        make_tool(
            INTERRUPT_AGENT,
            "Stop an agent's current turn.",
            object_schema(identity, ["id"]),
            interrupt,
            describe_os_error=_describe,
        ),
        make_tool(
            LIST_AGENTS,
            "List this chat's agents: id, title, status, and the answer of each finished one.",
            object_schema({}, []),
            listing,
            describe_os_error=_describe,
        ),
    ]


async def _answer(result: Any) -> ToolResponse:
    try:
        return ToolResponse.text(json_text(await result))
    except AgentError as err:
        return ToolResponse.error(str(err))


def with_agent_tools(selection: ToolSelection, host: AgentHost) -> ToolSelection:
    """`selection` plus the agent tools, `wait_agent` as a tool the store answers."""
    tools = agent_tools(host)
    return dataclasses.replace(
        selection,
        tools=[*selection.tools, *tools],
        active_tools=[*selection.active_tools, *(t.name for t in tools)],
        dynamic_tool_names=selection.dynamic_tool_names | {WAIT_AGENT},
    )


def child_unavailable_tools() -> dict[str, str]:
    """What a child chat's call of an agent tool gets: the depth-1 rule, plainly."""
    return {name: AGENT_DEPTH_ERROR.format(tool=name) for name in AGENT_TOOL_NAMES}
