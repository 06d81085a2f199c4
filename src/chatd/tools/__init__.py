"""Tools a chat can use: built-in workspace tools, MCP server tools, client (dynamic) tools.

- `builtin_tools(workspace, config)`: `read_file`, `write_file`, `edit_files`,
  `execute`, `process_output`, `process_list`, `process_signal`, `attach_file`,
  all confined to a `Workspace` directory.

Every tool reports bad input and failures as error results, never by raising, so
the model can correct itself. This package builds `chatd.loop.Tool`s; it does not
run the loop, persist anything or speak HTTP. See docs/tools.md.
"""

from chatd.tools._builtin import BUILTIN_TOOL_NAMES, builtin_tools
from chatd.tools._config import BuiltinToolsConfig
from chatd.tools._output import MODEL_OUTPUT_CAP
from chatd.tools._workspace import Workspace

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "MODEL_OUTPUT_CAP",
    "BuiltinToolsConfig",
    "Workspace",
    "builtin_tools",
]
