// The built-in tool levels the UI offers for a new chat ("off", "files", "all") and how
// an existing chat's `tools.builtin` reads back as one of them. Names only: which tools
// a user may enable is the server's decision (GET /api/users/me → builtin_tools), and a
// chat asking for more is refused there; nothing here touches the DOM.

// chatd.tools.BUILTIN_TOOL_NAMES, in its order (tests/web pins the two equal).
export const BUILTIN_TOOLS = Object.freeze([
  "read_file",
  "write_file",
  "edit_files",
  "execute",
  "process_output",
  "process_list",
  "process_signal",
  "attach_file",
]);

// The file tools: reading, writing and attaching workspace files, no commands.
export const FILE_TOOLS = Object.freeze(["read_file", "write_file", "edit_files", "attach_file"]);

const LEVEL_TOOLS = { off: [], files: FILE_TOOLS, all: BUILTIN_TOOLS };

/** The tool names a level enables (an unknown level enables none). */
export function toolsForLevel(level) {
  return [...(LEVEL_TOOLS[level] || [])];
}

/**
 * The levels a user may pick, given the names they may enable: "files" needs every
 * file tool, "all" every built-in one. Only ["off"] means the user may enable none.
 */
export function allowedLevels(builtinTools) {
  const allowed = new Set(builtinTools || []);
  return Object.keys(LEVEL_TOOLS).filter((level) =>
    LEVEL_TOOLS[level].every((name) => allowed.has(name)),
  );
}

/**
 * A chat's `tools.builtin` ("all", a list of names, or absent) as its short label:
 * "all", "files", the names themselves, or "" when the chat has no built-in tools.
 */
export function builtinLabel(builtin) {
  if (builtin === "all") return "all";
  if (!Array.isArray(builtin) || builtin.length === 0) return "";
  const names = new Set(builtin);
  const same = (level) =>
    LEVEL_TOOLS[level].length === names.size && LEVEL_TOOLS[level].every((n) => names.has(n));
  if (same("all")) return "all";
  if (same("files")) return "files";
  return [...names].join(", ");
}

/** The names behind a chat's `tools.builtin`, for a tooltip. */
export function builtinNames(builtin) {
  if (builtin === "all") return [...BUILTIN_TOOLS];
  return Array.isArray(builtin) ? [...builtin] : [];
}
