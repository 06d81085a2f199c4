"""Tools as the loop runs them: the execution of one step's calls and the exclusive-tool policy.

Tool failures are never run failures: an unknown, inactive, crashing or erroring
tool becomes an error result fed back to the model. Only cancellation escapes.
The tool types themselves (`Tool`, `ToolCall`, `ToolResponse`) live in `chatd.protocols`.
"""

from __future__ import annotations

import asyncio

from chatd.protocols import Tool, ToolCall, ToolResponse
from chatd.types import ToolCallPart

__all__ = ["exclusive_policy_errors", "run_tool"]


async def run_tool(tool: Tool, call: ToolCallPart) -> ToolResponse:
    """Run one tool, turning every failure except cancellation into an error response."""
    try:
        return await tool.run(ToolCall(call.tool_call_id, call.tool_name, call.input))
    except asyncio.CancelledError:
        raise
    except Exception as err:
        return ToolResponse.error(str(err) or type(err).__name__)
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        return ToolResponse.error(f"tool panicked: {err!r}")


def exclusive_policy_errors(
    calls: list[ToolCallPart], exclusive: frozenset[str]
) -> list[str] | None:
    """Error texts, in call order, when a batch breaks the exclusive-tool policy; else None.

    A tool in `exclusive` must be the only local call of its step. When it is not,
    nothing runs and every call is told why, so the model can retry correctly.
    """
    if len(calls) < 2 or not exclusive:
        return None
    blocking = next((c.tool_name for c in calls if c.tool_name in exclusive), None)
    if blocking is None:
        return None
    messages = []
    for call in calls:
        if call.tool_name in exclusive:
            messages.append(
                f"{call.tool_name} must be called alone, without other tools in the same "
                f"batch. Retry with only the {call.tool_name} call."
            )
        else:
            messages.append(
                f"this tool was skipped because {blocking} must run alone in its batch. "
                f"Retry your tool calls without {blocking}, or call {blocking} separately first."
            )
    return messages
