"""Plan mode's tool selection, propose_plan's checks and ask_user_question's answers."""

from __future__ import annotations

import json
from pathlib import Path

from chatd.loop import Tool, ToolCall, ToolResponse
from chatd.tools import (
    ASK_USER_QUESTION,
    PROPOSE_PLAN,
    DynamicToolSpec,
    ToolConfig,
    Workspace,
    answer_problem,
    builtin_tools,
    plan_mode_selection,
    select_tools,
)


async def _mcp_run(_call: ToolCall) -> ToolResponse:
    return ToolResponse.text("mcp")


def test_plan_mode_keeps_only_read_only_builtins_and_adds_its_own_tools(tmp_path: Path) -> None:
    config = ToolConfig(dynamic=(DynamicToolSpec(name="browser"),), stop_after=("execute",))
    selection = select_tools(
        config,
        builtin=builtin_tools(Workspace(tmp_path)),
        mcp=[Tool("github__create_issue", "", _mcp_run)],
    )
    planning = plan_mode_selection(selection)
    expected = [
        "read_file",
        "process_output",
        "process_list",
        "attach_file",
        PROPOSE_PLAN,
        ASK_USER_QUESTION,
    ]
    assert [t.name for t in planning.tools] == expected
    assert planning.active_tools == expected
    assert planning.stop_after_tools == {PROPOSE_PLAN}
    assert planning.dynamic_tool_names == {ASK_USER_QUESTION}
    assert planning.builtin_tool_names == set(expected[:4])


async def test_propose_plan_accepts_a_plan_and_refuses_an_empty_or_huge_one() -> None:
    [propose] = [
        t for t in plan_mode_selection(select_tools(ToolConfig())).tools if t.name == PROPOSE_PLAN
    ]

    async def call(arguments: object) -> ToolResponse:
        return await propose.run(ToolCall("c1", PROPOSE_PLAN, json.dumps(arguments)))

    assert not (await call({"plan": "# Plan\n1. Do it."})).is_error
    for bad, reason in (
        ({}, "plan is required"),
        ({"plan": 3}, "must be a string"),
        ({"plan": "  \n"}, "empty"),
        ({"plan": "x" * (32 * 1024 + 1)}, "32 KiB"),
    ):
        response = await call(bad)
        assert response.is_error and reason in response.content, (bad, response.content)


def test_an_answer_must_be_one_of_the_choices_when_there_are_some() -> None:
    choices = json.dumps({"question": "Which?", "choices": ["red", "blue"]})
    assert answer_problem(choices, "blue") is None
    problem = answer_problem(choices, "green")
    assert problem == 'Answer with one of the question\'s choices: "red", "blue".'
    assert answer_problem(json.dumps({"question": "Why?"}), "because") is None
    assert answer_problem("not json", "anything") is None
