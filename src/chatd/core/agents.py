"""Child chats (sub-agents): the tool names and the `wait_agent` arguments.

A chat with built-in tools may start child chats with `spawn_agent` and wait for
them with `wait_agent`. The wait is answered by the store, not by a runner: the
parent leaves its worker slot in `requires_action` with the `wait_agent` call
pending, and whichever replica sees its children finish (or the deadline pass)
writes the call's result and makes the parent pending again. So the store, the
tools and the worker share the names and the argument rules kept here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chatd.core.durations import parse_duration

__all__ = [
    "AGENT_TOOL_NAMES",
    "DEFAULT_WAIT_SECONDS",
    "INTERRUPT_AGENT",
    "LIST_AGENTS",
    "MAX_WAIT_SECONDS",
    "MESSAGE_AGENT",
    "SPAWN_AGENT",
    "WAIT_AGENT",
    "AgentWait",
    "parse_wait",
]

SPAWN_AGENT = "spawn_agent"
WAIT_AGENT = "wait_agent"
MESSAGE_AGENT = "message_agent"
INTERRUPT_AGENT = "interrupt_agent"
LIST_AGENTS = "list_agents"
AGENT_TOOL_NAMES = (SPAWN_AGENT, WAIT_AGENT, MESSAGE_AGENT, INTERRUPT_AGENT, LIST_AGENTS)

# Upstream's default wait (5 minutes); a wait is capped at an hour.
DEFAULT_WAIT_SECONDS = 300.0
MAX_WAIT_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class AgentWait:
    """One `wait_agent` call: the children it waits for (None: every child of the
    chat) and for how long. `problem` is the error result of a call that cannot wait."""

    ids: tuple[str, ...] | None
    seconds: float
    problem: str = ""


def parse_wait(arguments: str) -> AgentWait:
    """The `wait_agent` call with these JSON arguments ({"ids"?: [...], "timeout"?: ...})."""
    try:
        values = json.loads(arguments or "{}")
    except ValueError:
        return AgentWait(None, 0.0, f"{WAIT_AGENT}: the arguments are not valid JSON.")
    if not isinstance(values, dict):
        return AgentWait(None, 0.0, f"{WAIT_AGENT}: the arguments must be a JSON object.")
    unknown = sorted(set(values) - {"ids", "timeout"})
    if unknown:
        return AgentWait(None, 0.0, f"{WAIT_AGENT}: unknown arguments {unknown}.")
    ids = values.get("ids")
    if ids is not None and (
        not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)
    ):
        return AgentWait(None, 0.0, f"{WAIT_AGENT}: ids must be a list of agent ids.")
    seconds = DEFAULT_WAIT_SECONDS
    if values.get("timeout") is not None:
        try:
            seconds = min(parse_duration(values["timeout"], "timeout"), MAX_WAIT_SECONDS)
        except ValueError as err:
            return AgentWait(None, 0.0, f"{WAIT_AGENT}: {err}.")
    return AgentWait(tuple(dict.fromkeys(ids)) if ids else None, seconds)
