"""The built-in tool levels of `chatd chat --tools` and how a chat's tools read back.

`none`, `files` or `all` becomes the `tools.builtin` list a new chat asks for, the same
names the browser UI sends (`web/tools.js`); a chat's stored `tools.builtin` ("all" or a
list) reads back as one of those levels or as its names. Names only: the server decides
who may enable what and answers 422 otherwise. No I/O here, and no import of
`chatd.tools` (the server side), so the client stays a thin client of the API.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN_TOOLS", "FILE_TOOLS", "builtin_label", "tools_for_level"]

# chatd.tools.BUILTIN_TOOL_NAMES, in its order (tests/tui pins the two equal).
BUILTIN_TOOLS: tuple[str, ...] = (
    "read_file",
    "write_file",
    "edit_files",
    "execute",
    "process_output",
    "process_list",
    "process_signal",
    "attach_file",
)
# Reading, writing and attaching workspace files: no commands.
FILE_TOOLS: tuple[str, ...] = ("read_file", "write_file", "edit_files", "attach_file")

_LEVELS: dict[str, tuple[str, ...]] = {"none": (), "files": FILE_TOOLS, "all": BUILTIN_TOOLS}


def tools_for_level(level: str) -> list[str]:
    """The tool names `level` enables (ValueError for an unknown level)."""
    try:
        return list(_LEVELS[level])
    except KeyError:
        raise ValueError(
            f"unknown tools level {level!r}; use one of {', '.join(_LEVELS)}"
        ) from None


def builtin_label(tools: Any) -> str:
    """A chat's stored tool config as "all", "files", its tool names, or "" for none."""
    builtin = tools.get("builtin") if isinstance(tools, dict) else None
    if builtin == "all":
        return "all"
    if not isinstance(builtin, list) or not builtin:
        return ""
    names = set(builtin)
    for level in ("all", "files"):
        if names == set(_LEVELS[level]):
            return level
    return ", ".join(str(name) for name in builtin)
