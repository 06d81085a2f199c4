"""Tools a chat can use: built-in workspace tools, MCP server tools, client (dynamic) tools.

- `builtin_tools(workspace, config)`: `read_file`, `write_file`, `edit_files`,
  `execute`, `process_output`, `process_list`, `process_signal`, `attach_file`,
  all confined to a `Workspace` directory; `read_agents_md(workspace)` reads its
  `AGENTS.md` for a run's instructions, through the same confinement.
- `McpConnections(servers)`: an async context manager owning a run's MCP sessions;
  its `tools` are named `<slug>__<tool>`.
- `plan_mode_selection()` and `with_question_tool()`: what a run in plan mode offers
  (read-only built-ins, `propose_plan`), and `ask_user_question`, answered by the user.
- `agent_tools(host)` and `with_agent_tools()`: `spawn_agent`, `wait_agent`,
  `message_agent`, `interrupt_agent`, `list_agents` over an `AgentHost` (sub-agents).
- `ToolConfig` (a chat's `tools` field) and `select_tools()`: which tools a run
  gets, and the name sets `chatd.loop.RunOptions` needs.

Every tool reports bad input and failures as error results, never by raising, so
the model can correct itself. This package builds `chatd.loop.Tool`s; it does not
run the loop, persist anything or speak HTTP. See docs/tools.md.
"""

from chatd.tools._agents import (
    AgentError,
    AgentHost,
    agent_tools,
    child_unavailable_tools,
    with_agent_tools,
)
from chatd.tools._builtin import BUILTIN_TOOL_NAMES, builtin_tools
from chatd.tools._config import BuiltinToolsConfig, sandbox_for_settings
from chatd.tools._instructions import read_agents_md
from chatd.tools._mcp import McpConnections
from chatd.tools._mcp_config import McpServerConfig, McpToolInfo, mcp_tool_name
from chatd.tools._output import MODEL_OUTPUT_CAP
from chatd.tools._plan import (
    ASK_USER_QUESTION,
    PROPOSE_PLAN,
    READ_ONLY_BUILTIN_TOOLS,
    answer_problem,
    plan_mode_selection,
    with_question_tool,
)
from chatd.tools._policy import PROCESS_TOOL_NAMES, allowed_builtin_tools, effective_tool_policy
from chatd.tools._sandbox import (
    Bubblewrap,
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    Unsandboxed,
)
from chatd.tools._selection import (
    DynamicToolSpec,
    ToolConfig,
    ToolConfigError,
    ToolSelection,
    dynamic_tool,
    select_mcp_servers,
    select_tools,
)
from chatd.tools._workspace import Workspace, Workspaces

__all__ = [
    "ASK_USER_QUESTION",
    "BUILTIN_TOOL_NAMES",
    "MODEL_OUTPUT_CAP",
    "PROCESS_TOOL_NAMES",
    "PROPOSE_PLAN",
    "READ_ONLY_BUILTIN_TOOLS",
    "AgentError",
    "AgentHost",
    "Bubblewrap",
    "BuiltinToolsConfig",
    "DynamicToolSpec",
    "McpConnections",
    "McpServerConfig",
    "McpToolInfo",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "ToolConfig",
    "ToolConfigError",
    "ToolSelection",
    "Unsandboxed",
    "Workspace",
    "Workspaces",
    "agent_tools",
    "allowed_builtin_tools",
    "answer_problem",
    "builtin_tools",
    "child_unavailable_tools",
    "dynamic_tool",
    "effective_tool_policy",
    "mcp_tool_name",
    "plan_mode_selection",
    "read_agents_md",
    "sandbox_for_settings",
    "select_mcp_servers",
    "select_tools",
    "with_agent_tools",
    "with_question_tool",
]
