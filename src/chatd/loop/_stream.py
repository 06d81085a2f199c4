"""Assembling one step's content from a model stream: the loop's per-token hot path.

Content is appended in the order blocks close, tool input is taken from the final
`tool_call` part, and every delta is published live. This module does no I/O of its
own and decides nothing about retries or persistence; it keeps just enough state
that an interrupted attempt can be flushed into a partial step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from chatd.types import (
    FinishReason,
    MessagePart,
    ReasoningPart,
    Role,
    SourcePart,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

__all__ = ["Publish", "StepState", "StreamFailed", "consume_stream"]

Publish = Callable[[Role, MessagePart], None]

_TEXT_DELTA = StreamPartType.TEXT_DELTA
_REASONING_DELTA = StreamPartType.REASONING_DELTA
_TOOL_INPUT_DELTA = StreamPartType.TOOL_INPUT_DELTA
_TEXT_START = StreamPartType.TEXT_START
_TEXT_END = StreamPartType.TEXT_END
_REASONING_START = StreamPartType.REASONING_START
_REASONING_END = StreamPartType.REASONING_END
_TOOL_INPUT_START = StreamPartType.TOOL_INPUT_START
_TOOL_CALL = StreamPartType.TOOL_CALL
_TOOL_RESULT = StreamPartType.TOOL_RESULT
_SOURCE = StreamPartType.SOURCE
_FINISH = StreamPartType.FINISH
_ERROR = StreamPartType.ERROR
_ASSISTANT = Role.ASSISTANT
_TOOL = Role.TOOL


class StreamFailed(Exception):
    """The stream sent an `error` part; `__cause__` is the provider's error."""


class _OpenToolCall:
    __slots__ = ("chunks", "name", "provider_executed")

    def __init__(self, name: str, provider_executed: bool) -> None:
        self.name = name
        self.provider_executed = provider_executed
        self.chunks: list[str] = []


class StepState:
    """Everything one generation attempt has assembled so far."""

    __slots__ = (
        "content",
        "finish_reason",
        "first_part_at",
        "open_reasoning",
        "open_text",
        "open_tool_calls",
        "provider_metadata",
        "tool_call_created_at",
        "tool_calls",
        "tool_names",
        "tool_result_created_at",
        "usage",
    )

    def __init__(self) -> None:
        self.content: list[MessagePart] = []
        self.tool_calls: list[ToolCallPart] = []
        self.open_text: dict[str, list[str]] = {}
        self.open_reasoning: dict[str, tuple[list[str], dict[str, Any] | None]] = {}
        self.open_tool_calls: dict[str, _OpenToolCall] = {}
        self.tool_names: dict[str, str] = {}
        self.usage = Usage()
        self.finish_reason: FinishReason = FinishReason.UNKNOWN
        self.provider_metadata: dict[str, Any] | None = None
        self.tool_call_created_at: dict[str, datetime] = {}
        self.tool_result_created_at: dict[str, datetime] = {}
        self.first_part_at: float | None = None

    def flush_open_blocks(self) -> None:
        """Close every open block as-is (used when an attempt is interrupted)."""
        for chunks in self.open_text.values():
            text = "".join(chunks)
            if text:
                self.content.append(TextPart(text))
        for chunks, metadata in self.open_reasoning.values():
            text = "".join(chunks)
            if text:
                self.content.append(ReasoningPart(text, provider_metadata=metadata or {}))
        for call_id, open_call in self.open_tool_calls.items():
            name = self.tool_names.get(call_id, "").strip() or open_call.name
            call = ToolCallPart(
                tool_call_id=call_id,
                tool_name=name,
                input="".join(open_call.chunks),
                provider_executed=open_call.provider_executed,
            )
            self.content.append(call)
            self.tool_calls.append(call)
        self.open_text.clear()
        self.open_reasoning.clear()
        self.open_tool_calls.clear()


async def consume_stream(
    stream: AsyncIterator[StreamPart],
    state: StepState,
    publish: Publish | None,
    now: Callable[[], float],
    utcnow: Callable[[], datetime],
    on_first_part: Callable[[], None],
) -> None:
    """Read `stream` to its end into `state`, publishing live parts as they arrive.

    Raises `StreamFailed` on an `error` part. Cancellation (interrupt, startup
    timeout) propagates; the caller flushes `state`.
    """
    open_text = state.open_text
    first = True
    async for part in stream:
        if first:
            first = False
            state.first_part_at = now()
            on_first_part()
        kind = part.type
        # Deltas are nearly every part of a stream: test them first, inline.
        if kind == _TEXT_DELTA:
            chunks = open_text.get(part.id)
            if chunks is not None:
                chunks.append(part.delta)
            if publish is not None:
                publish(_ASSISTANT, TextPart(part.delta))
        elif kind == _REASONING_DELTA:
            entry = state.open_reasoning.get(part.id)
            if entry is not None:
                entry[0].append(part.delta)
                state.open_reasoning[part.id] = (entry[0], part.provider_metadata)
            if publish is not None:
                publish(_ASSISTANT, ReasoningPart(part.delta))
        elif kind == _TOOL_INPUT_DELTA:
            open_call = state.open_tool_calls.get(part.id)
            if open_call is not None:
                open_call.chunks.append(part.delta)
            if publish is not None:
                publish(
                    _ASSISTANT,
                    ToolCallPart(
                        tool_call_id=part.id,
                        tool_name=state.tool_names.get(part.id, ""),
                        args_delta=part.delta,
                        provider_executed=open_call.provider_executed if open_call else False,
                    ),
                )
        else:
            _handle_structural_part(part, state, publish, utcnow)


def _handle_structural_part(
    part: StreamPart,
    state: StepState,
    publish: Publish | None,
    utcnow: Callable[[], datetime],
) -> None:
    kind = part.type
    if kind == _TEXT_START:
        state.open_text[part.id] = []
    elif kind == _TEXT_END:
        chunks = state.open_text.pop(part.id, None)
        if chunks is not None:
            state.content.append(
                TextPart("".join(chunks), provider_metadata=part.provider_metadata or {})
            )
    elif kind == _REASONING_START:
        state.open_reasoning[part.id] = (
            [part.delta] if part.delta else [],
            part.provider_metadata,
        )
    elif kind == _REASONING_END:
        entry = state.open_reasoning.pop(part.id, None)
        if entry is not None:
            metadata = part.provider_metadata or entry[1]
            state.content.append(ReasoningPart("".join(entry[0]), provider_metadata=metadata or {}))
    elif kind == _TOOL_INPUT_START:
        state.open_tool_calls[part.id] = _OpenToolCall(part.tool_call_name, part.provider_executed)
        if part.tool_call_name.strip():
            state.tool_names[part.id] = part.tool_call_name
    elif kind == _TOOL_CALL:
        created_at = utcnow()
        call = ToolCallPart(
            tool_call_id=part.id,
            tool_name=part.tool_call_name,
            input=part.tool_call_input,
            provider_executed=part.provider_executed,
            created_at=created_at,
            provider_metadata=part.provider_metadata or {},
        )
        state.content.append(call)
        state.tool_calls.append(call)
        state.open_tool_calls.pop(part.id, None)
        state.tool_call_created_at[part.id] = created_at
        if publish is not None:
            publish(_ASSISTANT, call)
    elif kind == _TOOL_RESULT:
        if part.provider_executed:
            created_at = utcnow()
            result = ToolResultPart(
                tool_call_id=part.id,
                tool_name=part.tool_call_name,
                provider_executed=True,
                created_at=created_at,
                provider_metadata=part.provider_metadata or {},
            )
            state.content.append(result)
            state.tool_result_created_at[part.id] = created_at
            if publish is not None:
                publish(_TOOL, result)
    elif kind == _SOURCE:
        source = SourcePart(
            id=part.id,
            source_type=part.source_type or "url",
            url=part.url,
            title=part.title,
            provider_metadata=part.provider_metadata or {},
        )
        state.content.append(source)
        if publish is not None:
            publish(_ASSISTANT, source)
    elif kind == _FINISH:
        state.usage = part.usage or Usage()
        state.finish_reason = part.finish_reason or FinishReason.UNKNOWN
        state.provider_metadata = part.provider_metadata
    elif kind == _ERROR:
        error = part.error or RuntimeError("model stream reported an error without detail")
        raise StreamFailed(str(error)) from error
    # warnings, tool_input_end and unknown types carry nothing the loop keeps.
