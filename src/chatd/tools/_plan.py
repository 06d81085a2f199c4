"""Plan mode's tools: `propose_plan`, `ask_user_question`, and what a run in plan mode offers.

In plan mode a run offers only the built-ins that cannot change anything (reading
files and background processes, showing a file), provider tools such as web search,
`propose_plan` (a stop-after tool: the turn ends with the plan) and
`ask_user_question`. MCP and client tools are left out: chatd cannot know whether
they write. `ask_user_question` is a client tool the server answers with the user's
reply (the turn waits in `requires_action`); `answer_problem` checks that reply.
This module never persists anything or speaks HTTP.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from chatd.loop import Tool, ToolCall, ToolResponse
from chatd.tools._args import Arguments, ToolInputError
from chatd.tools._selection import (
    ASK_USER_QUESTION,
    PROPOSE_PLAN,
    DynamicToolSpec,
    ToolSelection,
    dynamic_tool,
)

__all__ = [
    "ASK_USER_QUESTION",
    "PROPOSE_PLAN",
    "READ_ONLY_BUILTIN_TOOLS",
    "answer_problem",
    "plan_mode_selection",
    "with_question_tool",
]

# The built-ins that read and never change the workspace or start a process.
READ_ONLY_BUILTIN_TOOLS = frozenset({"read_file", "process_output", "process_list", "attach_file"})
# 32 KiB: upstream's limit on a proposed plan; a longer one is an error result.
MAX_PLAN_BYTES = 32 * 1024

_PROPOSE_PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "plan": {"type": "string", "description": "The plan, in Markdown (≤ 32 KiB)."},
    },
    "required": ["plan"],
    "additionalProperties": False,
}

_QUESTION = DynamicToolSpec(
    name=ASK_USER_QUESTION,
    description="Ask the user one question and wait for the answer, which is this tool's "
    "result. With choices, the answer is one of them.",
    input_schema={
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "The question, in one sentence."},
            "choices": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 2,
                "description": "The answers the user picks from (leave out for a free answer).",
            },
        },
        "required": ["question"],
        "additionalProperties": False,
    },
)


async def _propose_plan(call: ToolCall) -> ToolResponse:
    try:
        plan = Arguments(call.arguments()).text("plan")
    except (ToolInputError, ValueError) as err:
        return ToolResponse.error(f"{PROPOSE_PLAN}: {err}")
    if not plan.strip():
        return ToolResponse.error(f"{PROPOSE_PLAN}: the plan is empty; write it in plan.")
    if len(plan.encode("utf-8")) > MAX_PLAN_BYTES:
        return ToolResponse.error(f"{PROPOSE_PLAN}: the plan is over 32 KiB; shorten it.")
    return ToolResponse.text(
        "The plan is shown to the user and the turn ends here. They approve it (plan mode "
        "ends and you carry it out with every tool) or answer with changes."
    )


def _propose_plan_tool() -> Tool:
    return Tool(
        name=PROPOSE_PLAN,
        description="Plan mode: you can only read. Explore, then present your plan for the "
        "user's approval. This ends the turn; do not act before the plan is approved.",
        run=_propose_plan,
        input_schema=_PROPOSE_PLAN_SCHEMA,
    )


def with_question_tool(selection: ToolSelection) -> ToolSelection:
    """`selection` plus `ask_user_question`, a client tool answered by the user."""
    return dataclasses.replace(
        selection,
        tools=[*selection.tools, dynamic_tool(_QUESTION)],
        active_tools=[*selection.active_tools, ASK_USER_QUESTION],
        dynamic_tool_names=selection.dynamic_tool_names | {ASK_USER_QUESTION},
    )


def plan_mode_selection(selection: ToolSelection) -> ToolSelection:
    """What a run in plan mode offers of `selection`: its read-only built-ins, then
    `propose_plan` (which ends the turn) and `ask_user_question`."""
    tools = [
        t
        for t in selection.tools
        if t.name in READ_ONLY_BUILTIN_TOOLS and t.name in selection.builtin_tool_names
    ]
    tools.append(_propose_plan_tool())
    names = [t.name for t in tools]
    return with_question_tool(
        ToolSelection(
            tools=tools,
            active_tools=names,
            builtin_tool_names=selection.builtin_tool_names & set(names),
            dynamic_tool_names=set(),
            stop_after_tools={PROPOSE_PLAN},
            exclusive_tool_names=set(),
        )
    )


def answer_problem(arguments: str, answer: str) -> str | None:
    """Why `answer` cannot answer the `ask_user_question` call with `arguments` (its
    JSON text), or None: when the call offered choices, the answer must be one."""
    try:
        values = json.loads(arguments or "{}")
    except ValueError:
        return None  # a call the model garbled: any answer will do
    choices = values.get("choices") if isinstance(values, dict) else None
    if not isinstance(choices, list) or not choices:
        return None
    if answer in choices:
        return None
    listed = ", ".join(json.dumps(str(c), ensure_ascii=False) for c in choices)
    return f"Answer with one of the question's choices: {listed}."
