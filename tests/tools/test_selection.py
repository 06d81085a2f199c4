"""Per-chat tool configuration (spec §7.1) and how a run's tools are selected."""

from __future__ import annotations

import pytest

from chatd.loop import (
    FakeModel,
    RunOptions,
    RunOutcome,
    Tool,
    ToolCall,
    ToolResponse,
    run,
    stream_from_parts,
)
from chatd.tools import (
    BUILTIN_TOOL_NAMES,
    DynamicToolSpec,
    McpServerConfig,
    ToolConfig,
    ToolConfigError,
    Workspace,
    builtin_tools,
    select_mcp_servers,
    select_tools,
)
from chatd.types import FinishReason, Message, Role, TextPart, ToolResultError, ToolResultPart
from tests.loop.helpers import Recorder, finish, tool_call


def mcp_tool(name: str) -> Tool:
    async def run_it(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("mcp")

    return Tool(name, "", run_it)


def test_defaults_are_every_builtin_every_server_no_dynamic_tools() -> None:
    config = ToolConfig.from_json(None)
    assert config == ToolConfig()
    assert config.builtin_names() == BUILTIN_TOOL_NAMES
    assert config.mcp_servers is None
    assert config.to_json() == {}


def test_a_configuration_round_trips_through_json() -> None:
    value = {
        "builtin": ["read_file", "execute"],
        "mcp_servers": ["github"],
        "dynamic": [{"name": "browser", "description": "d", "input_schema": {"type": "object"}}],
        "stop_after": ["browser"],
        "exclusive": ["execute"],
    }
    config = ToolConfig.from_json(value)
    assert config.builtin_names() == ("read_file", "execute")
    assert config.dynamic == (DynamicToolSpec("browser", "d", {"type": "object"}),)
    assert config.to_json() == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"builtin": ["read_file", "rm_rf"]}, "unknown built-in tools ['rm_rf']"),
        ({"builtin": "some"}, "tools: "),
        ({"colour": "blue"}, "unknown field"),
        ({"dynamic": [{"name": "read_file"}]}, "'read_file' is already used"),
        ({"dynamic": [{"name": "a"}, {"name": "a"}]}, "'a' is already used"),
        ({"dynamic": [{"name": "gh__x"}]}, "reserved for MCP tools"),
        ({"dynamic": [{"name": "has space"}]}, "not a valid tool name"),
        ({"dynamic": [{"name": "x" * 65}]}, "not a valid tool name"),
        ({"dynamic": [{"name": "x", "input_schema": {"type": "string"}}]}, "must be a JSON schema"),
        ([], "tools: "),
    ],
)
def test_invalid_configurations_are_refused(value: object, message: str) -> None:
    with pytest.raises(ToolConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ToolConfig.from_json(value)


async def test_select_tools_combines_builtins_dynamic_and_mcp(workspace: Workspace) -> None:
    config = ToolConfig.from_json(
        {
            "builtin": ["execute", "read_file"],
            "dynamic": [{"name": "browser"}],
            "stop_after": ["browser"],
            "exclusive": ["execute"],
        }
    )
    selection = select_tools(
        config,
        builtin=builtin_tools(workspace),
        mcp=[mcp_tool("gh__issues"), mcp_tool("browser"), mcp_tool("read_file")],
    )
    assert [t.name for t in selection.tools] == ["read_file", "execute", "browser", "gh__issues"]
    assert selection.active_tools == ["read_file", "execute", "browser", "gh__issues"]
    assert selection.builtin_tool_names == {"read_file", "execute"}
    assert selection.dynamic_tool_names == {"browser"}
    assert selection.stop_after_tools == {"browser"}
    assert selection.exclusive_tool_names == {"execute"}
    # the dynamic tool is offered, but the server never runs it
    browser = selection.tools[2]
    response = await browser.run(ToolCall("c", "browser", "{}"))
    assert response.is_error

    options = selection.apply(RunOptions(max_steps=3))
    assert options.max_steps == 3
    assert [t.name for t in options.tools] == selection.active_tools
    assert options.exclusive_tool_names == {"execute"}
    assert options.builtin_tool_names == {"read_file", "execute"}


def test_builtin_empty_list_means_no_builtins(workspace: Workspace) -> None:
    selection = select_tools(ToolConfig(builtin=()), builtin=builtin_tools(workspace))
    assert selection.tools == []
    assert selection.builtin_tool_names == set()


def test_select_mcp_servers_keeps_enabled_chosen_servers() -> None:
    servers = [
        McpServerConfig(slug="a", transport="stdio", command=("a",)),
        McpServerConfig(slug="b", transport="stdio", command=("b",), enabled=False),
        McpServerConfig(slug="c", transport="streamable_http", url="http://127.0.0.1:1/mcp"),
    ]
    assert [s.slug for s in select_mcp_servers(ToolConfig(), servers)] == ["a", "c"]
    chosen = ToolConfig(mcp_servers=("b", "c"))
    assert [s.slug for s in select_mcp_servers(chosen, servers)] == ["c"]


async def test_exclusive_policy_applies_to_selected_builtins(workspace: Workspace) -> None:
    (workspace.root / "f").write_text("x")
    selection = select_tools(ToolConfig(exclusive=("execute",)), builtin=builtin_tools(workspace))
    persist = Recorder()
    parts = [
        *tool_call("c1", "execute", '{"command": "touch ran"}'),
        *tool_call("c2", "read_file", '{"path": "f"}'),
        finish(FinishReason.TOOL_CALLS),
    ]
    await run(
        selection.apply(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: stream_from_parts(parts)),
                persist_step=persist,
            )
        )
    )
    results = [p for p in persist.steps[0].content if isinstance(p, ToolResultPart)]
    assert all(isinstance(r.output, ToolResultError) for r in results)
    assert "execute must be called alone" in (results[0].output.error or "")
    assert not (workspace.root / "ran").exists()


async def test_a_dynamic_tool_call_stops_the_run_for_the_client(workspace: Workspace) -> None:
    config = ToolConfig.from_json({"builtin": [], "dynamic": [{"name": "browser"}]})
    selection = select_tools(config, builtin=builtin_tools(workspace))
    persist = Recorder()
    parts = [*tool_call("c1", "browser", '{"url": "x"}'), finish(FinishReason.TOOL_CALLS)]
    model = FakeModel(stream_fn=lambda _c: stream_from_parts(parts))
    outcome = await run(
        selection.apply(
            RunOptions(
                model=model,
                persist_step=persist,
                messages=[Message(Role.USER, [TextPart("open it")])],
            )
        )
    )
    assert outcome is RunOutcome.REQUIRES_ACTION
    assert [d.name for d in model.calls[0].tools] == ["browser"]
    [pending] = persist.steps[0].pending_dynamic_tool_calls
    assert (pending.tool_name, pending.args) == ("browser", '{"url": "x"}')
