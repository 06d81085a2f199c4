"""Per-chat tool configuration (`ToolConfig`, spec §7.1) and what one run is given.

`ToolConfig` is the `tools` field of a chat: which built-ins, which MCP servers,
the client's dynamic tools, and the stop-after and exclusive policies.
`select_tools()` turns it plus the tools that exist into the loop's inputs
(`tools`, `active_tools`, `builtin_tool_names`, `dynamic_tool_names`, …). This
module never starts a process or opens a connection.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from chatd.core.agents import AGENT_TOOL_NAMES
from chatd.loop import RunOptions, Tool, ToolCall, ToolResponse
from chatd.providers import PROVIDER_TOOL_NAMES
from chatd.tools._builtin import BUILTIN_TOOL_NAMES
from chatd.tools._mcp_config import McpServerConfig

__all__ = [
    "DynamicToolSpec",
    "ToolConfig",
    "ToolConfigError",
    "ToolSelection",
    "dynamic_tool",
    "select_mcp_servers",
    "select_tools",
]

_log = logging.getLogger("chatd.tools")

# The tools of plan mode (chatd.tools._plan); no client tool may take their names.
PROPOSE_PLAN = "propose_plan"
ASK_USER_QUESTION = "ask_user_question"

# What every provider accepts as a function name (OpenAI's rule is the strictest).
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolConfigError(ValueError):
    """A `tools` configuration that cannot be used; the API answers it with 422."""


class DynamicToolSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A tool the client runs: offered to the model, never executed by the server."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ToolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A chat's `tools` (stored in `chats.tool_config`). The defaults mean: every built-in,
    every enabled MCP server, no dynamic tools, no policies."""

    builtin: Literal["all"] | tuple[str, ...] = "all"
    mcp_servers: tuple[str, ...] | None = None  # None: every enabled server
    dynamic: tuple[DynamicToolSpec, ...] = ()
    stop_after: tuple[str, ...] = ()
    exclusive: tuple[str, ...] = ()
    # Provider-executed tools (web search): run by the provider, if the model config allows.
    provider: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: object) -> ToolConfig:
        """Validate a decoded JSON value (None means the defaults); raises ToolConfigError."""
        if value is None:
            return cls()
        try:
            config = msgspec.convert(value, cls)
        except msgspec.ValidationError as err:
            raise ToolConfigError(f"tools: {err}") from None
        config.validate()
        return config

    def to_json(self) -> dict[str, Any]:
        """The JSON object (lists, not tuples) the store and the API carry."""
        encoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return encoded

    def validate(self) -> None:
        """Check names: known built-ins and provider tools, valid and unique dynamic names
        (ToolConfigError)."""
        if self.builtin != "all":
            unknown = sorted(set(self.builtin) - set(BUILTIN_TOOL_NAMES))
            if unknown:
                raise ToolConfigError(
                    f"tools.builtin: unknown built-in tools {unknown}; "
                    f"the built-ins are {list(BUILTIN_TOOL_NAMES)}"
                )
        unknown_provider = sorted(set(self.provider) - set(PROVIDER_TOOL_NAMES))
        if unknown_provider:
            raise ToolConfigError(
                f"tools.provider: unknown provider tools {unknown_provider}; "
                f"the provider tools are {list(PROVIDER_TOOL_NAMES)}"
            )
        seen: set[str] = set()
        for spec in self.dynamic:
            name = spec.name
            if not _TOOL_NAME.match(name):
                raise ToolConfigError(
                    f"tools.dynamic: {name!r} is not a valid tool name "
                    "(1-64 letters, digits, '_' or '-')"
                )
            if "__" in name:
                raise ToolConfigError(
                    f"tools.dynamic: {name!r} contains '__', which is reserved for MCP tools"
                )
            if name in BUILTIN_TOOL_NAMES or name in seen or name in self.provider:
                raise ToolConfigError(f"tools.dynamic: the tool name {name!r} is already used")
            if name in (PROPOSE_PLAN, ASK_USER_QUESTION):
                raise ToolConfigError(
                    f"tools.dynamic: the tool name {name!r} is reserved for plan mode"
                )
            if name in AGENT_TOOL_NAMES:
                raise ToolConfigError(
                    f"tools.dynamic: the tool name {name!r} is reserved for sub-agents"
                )
            if spec.input_schema.get("type") != "object":
                raise ToolConfigError(
                    f"tools.dynamic: the input_schema of {name!r} must be a JSON schema "
                    'of "type": "object"'
                )
            seen.add(name)

    def builtin_names(self) -> tuple[str, ...]:
        """The enabled built-in names, in the canonical order."""
        if self.builtin == "all":
            return BUILTIN_TOOL_NAMES
        chosen = set(self.builtin)
        return tuple(name for name in BUILTIN_TOOL_NAMES if name in chosen)


def select_mcp_servers(
    config: ToolConfig, servers: Iterable[McpServerConfig]
) -> list[McpServerConfig]:
    """The servers a chat connects to: enabled ones, filtered by `mcp_servers` if given."""
    wanted = None if config.mcp_servers is None else set(config.mcp_servers)
    return [s for s in servers if s.enabled and (wanted is None or s.slug in wanted)]


def dynamic_tool(spec: DynamicToolSpec) -> Tool:
    """The `Tool` offered to the model for a client tool. The loop never runs it: it stops
    with `DynamicToolCall` instead; running it anyway answers with an error."""

    async def run(call: ToolCall) -> ToolResponse:
        return ToolResponse.error(f"{spec.name} is run by the client, not by the server.")

    return Tool(
        name=spec.name, description=spec.description, run=run, input_schema=spec.input_schema
    )


@dataclass(frozen=True, slots=True)
class ToolSelection:
    """The tools of one run and the name sets the loop needs about them."""

    tools: list[Tool]
    active_tools: list[str]
    builtin_tool_names: set[str]
    dynamic_tool_names: set[str]
    stop_after_tools: set[str]
    exclusive_tool_names: set[str]

    def apply(self, options: RunOptions) -> RunOptions:
        """A copy of `options` with this selection's tools and name sets."""
        return dataclasses.replace(
            options,
            tools=list(self.tools),
            active_tools=list(self.active_tools),
            builtin_tool_names=set(self.builtin_tool_names),
            dynamic_tool_names=set(self.dynamic_tool_names),
            stop_after_tools=set(self.stop_after_tools),
            exclusive_tool_names=set(self.exclusive_tool_names),
        )


def select_tools(
    config: ToolConfig, *, builtin: Sequence[Tool] = (), mcp: Sequence[Tool] = ()
) -> ToolSelection:
    """Combine the chat's configuration with the tools available for this run.

    `builtin` is `builtin_tools(...)` (filtered here by `config.builtin`); `mcp` the
    tools of the chat's connected servers. A name used twice keeps its first owner
    in the order built-ins, dynamic, MCP, and the clash is logged.
    """
    enabled = set(config.builtin_names())
    tools: list[Tool] = [t for t in builtin if t.name in enabled]
    names = {t.name for t in tools}
    builtin_names = set(names)
    dynamic_names: set[str] = set()
    for spec in config.dynamic:
        if spec.name in names:
            _log.warning("dynamic tool %s clashes with a built-in tool; ignored", spec.name)
            continue
        tools.append(dynamic_tool(spec))
        names.add(spec.name)
        dynamic_names.add(spec.name)
    for tool in mcp:
        if tool.name in names:
            _log.warning("MCP tool %s clashes with another tool; ignored", tool.name)
            continue
        tools.append(tool)
        names.add(tool.name)
    return ToolSelection(
        tools=tools,
        active_tools=[t.name for t in tools],
        builtin_tool_names=builtin_names,
        dynamic_tool_names=dynamic_names,
        stop_after_tools=set(config.stop_after),
        exclusive_tool_names=set(config.exclusive),
    )
