"""Who may enable which built-in tools: the deployment's policy and a user's override.

A policy is one of `chatd.config.TOOL_POLICIES`: `none` (no built-in tool), `files`
(the file tools) or `all` (also `execute` and the process tools). A user's effective
policy is the override an admin set for them, else `all` for admins, else the
deployment default (`CHATD_BUILTIN_TOOLS`). Pure functions of names: the api checks a
new chat with them and the worker re-checks every run; this module reads nothing.
"""

from __future__ import annotations

from chatd.config import TOOL_POLICIES
from chatd.tools._builtin import BUILTIN_TOOL_NAMES

__all__ = ["PROCESS_TOOL_NAMES", "allowed_builtin_tools", "effective_tool_policy"]

# The tools that run commands on the server: they need the OS sandbox to be usable.
PROCESS_TOOL_NAMES = frozenset({"execute", "process_output", "process_list", "process_signal"})
# Reading, writing and attaching workspace files runs no command of the model's.
_FILE_TOOL_NAMES = frozenset(BUILTIN_TOOL_NAMES) - PROCESS_TOOL_NAMES

_ALLOWED = {
    "none": frozenset[str](),
    "files": _FILE_TOOL_NAMES,
    "all": frozenset(BUILTIN_TOOL_NAMES),
}
assert set(_ALLOWED) == set(TOOL_POLICIES)


def allowed_builtin_tools(policy: str) -> frozenset[str]:
    """The built-in tool names `policy` allows (ValueError for an unknown policy)."""
    try:
        return _ALLOWED[policy]
    except KeyError:
        raise ValueError(
            f"unknown tool policy {policy!r}; use one of {', '.join(TOOL_POLICIES)}"
        ) from None


def effective_tool_policy(override: str | None, *, is_admin: bool, default: str) -> str:
    """A user's policy: their override if an admin set one, else `all` for admins, else
    the deployment's `default`."""
    if override is not None:
        return override
    return "all" if is_admin else default
