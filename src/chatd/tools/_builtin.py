"""`builtin_tools()`: the eight built-in tools of one chat, with their JSON schemas.

The names are fixed by the spec (§7.3). Descriptions are written for the model:
they state the limits it will meet, so a cut or a refusal is never a surprise.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from chatd.loop import Tool
from chatd.tools._args import Handler, make_tool, object_schema
from chatd.tools._config import BuiltinToolsConfig
from chatd.tools._execute import ProcessTools
from chatd.tools._files import FileTools, describe_os_error
from chatd.tools._workspace import Workspace

__all__ = ["BUILTIN_TOOL_NAMES", "builtin_tools"]

BUILTIN_TOOL_NAMES: tuple[str, ...] = (
    "read_file",
    "write_file",
    "edit_files",
    "execute",
    "process_output",
    "process_list",
    "process_signal",
    "attach_file",
)

_DURATION = {
    "type": "string",
    "description": 'A duration such as "30s", "5m" or "1h30m".',
}


def _path(what: str) -> dict[str, Any]:
    return {"type": "string", "description": f"{what}, relative to the workspace root."}


SCHEMAS: dict[str, dict[str, Any]] = {
    "read_file": object_schema(
        {
            "path": _path("The file to read"),
            "offset": {"type": "integer", "minimum": 1, "description": "First line, 1-based."},
            "limit": {"type": "integer", "minimum": 1, "description": "Lines to read (2000)."},
        },
        ["path"],
    ),
    "write_file": object_schema(
        {
            "path": _path("The file to write; parent directories are created"),
            "content": {"type": "string", "description": "The whole new content (≤ 1 MiB)."},
        },
        ["path", "content"],
    ),
    "edit_files": object_schema(
        {
            "edits": {
                "type": "array",
                "minItems": 1,
                "items": object_schema(
                    {
                        "path": _path("The file to edit"),
                        "old_text": {
                            "type": "string",
                            "description": "Exact text to replace; must occur exactly once "
                            "unless replace_all is set.",
                        },
                        "new_text": {"type": "string", "description": "The replacement."},
                        "replace_all": {
                            "type": "boolean",
                            "description": "Replace every occurrence.",
                        },
                    },
                    ["path", "old_text", "new_text"],
                ),
            }
        },
        ["edits"],
    ),
    "execute": object_schema(
        {
            "command": {"type": "string", "description": "A shell command, run with sh -c."},
            "timeout": {**_DURATION, "description": 'Time limit, default "10s".'},
            "workdir": _path("Working directory (default: the root)"),
            "run_in_background": {
                "type": "boolean",
                "description": "Start it and return a process id at once.",
            },
            "model_intent": {
                "type": "string",
                "maxLength": 100,
                "description": "A few words on why, shown to the user.",
            },
        },
        ["command"],
    ),
    "process_output": object_schema(
        {
            "process_id": {"type": "string"},
            "wait_timeout": {
                **_DURATION,
                "description": 'How long to wait for the process to exit, default "10s"; '
                '"0s" returns at once.',
            },
        },
        ["process_id"],
    ),
    "process_list": object_schema({}, []),
    "process_signal": object_schema(
        {
            "process_id": {"type": "string"},
            "signal": {"type": "string", "enum": ["terminate", "kill"]},
        },
        ["process_id", "signal"],
    ),
    "attach_file": object_schema(
        {
            "path": _path("The file to show (≤ 5 MiB)"),
            "media_type": {
                "type": "string",
                "description": "MIME type; guessed from the extension when omitted.",
            },
        },
        ["path"],
    ),
}

DESCRIPTIONS: dict[str, str] = {
    "read_file": "Read a text file with line numbers. Reads up to 2000 lines from offset; "
    "lines over 2000 characters are cut. Files over 1 MiB can only be read by range.",
    "write_file": "Create or overwrite a file with the given content (atomic).",
    "edit_files": "Apply exact search/replace edits to one or more files. Every edit must "
    "match; if any fails, no file is changed. Returns a unified diff per file.",
    "execute": "Run a shell command in the workspace. Output (stdout and stderr) over 32 KiB "
    "is cut to its first and last 16 KiB. On timeout the command and its children are "
    "killed. Use run_in_background for servers and long jobs.",
    "process_output": "Wait for a background process and return its output (last 32 KiB "
    "shown, as for execute).",
    "process_list": "List this chat's background processes.",
    "process_signal": "Terminate or kill a background process and its children.",
    "attach_file": "Show a file (image, PDF, text; ≤ 5 MiB) to the model and the user.",
}


def builtin_tools(workspace: Workspace, config: BuiltinToolsConfig | None = None) -> list[Tool]:
    """The built-in tools confined to `workspace`, in `BUILTIN_TOOL_NAMES` order."""
    config = config or BuiltinToolsConfig()
    files = FileTools(workspace)
    processes = ProcessTools(workspace, config)
    handlers: dict[str, Handler] = {
        "read_file": files.read_file,
        "write_file": files.write_file,
        "edit_files": files.edit_files,
        "execute": processes.execute,
        "process_output": processes.process_output,
        "process_list": processes.process_list,
        "process_signal": processes.process_signal,
        "attach_file": files.attach_file,
    }
    # execute and process_output carry their own time limit (the call's timeout).
    own_timeout = {"execute", "process_output"}
    return [
        make_tool(
            name,
            DESCRIPTIONS[name],
            SCHEMAS[name],
            handlers[name],
            describe_os_error=partial(describe_os_error, workspace),
            timeout=None if name in own_timeout else config.file_tool_timeout,
        )
        for name in BUILTIN_TOOL_NAMES
    ]
