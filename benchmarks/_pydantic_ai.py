"""pydantic-ai on the workload: `Agent` over `FunctionModel` with a streaming function,
driven by `run_stream_events()`; deltas and tool results are read from the event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.run import AgentRunResultEvent

from benchmarks._workload import (
    CALL_IDS,
    PROMPT,
    TEXTS,
    TOOL_ARGS,
    TOOL_STEPS,
    Outcome,
    closing_answer,
)

TOOL_CALL_DELTAS = [
    {0: DeltaToolCall(name="echo", json_args=TOOL_ARGS[k], tool_call_id=CALL_IDS[k])}
    for k in range(TOOL_STEPS)
]


def tool_results_in(messages: list[ModelMessage]) -> list[str]:
    return [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


def agent_for(workload: str) -> Agent[None, str]:
    step = 0

    async def stream(messages: list[ModelMessage], _info: AgentInfo) -> AsyncIterator[Any]:
        nonlocal step
        step += 1
        if workload in TEXTS:
            for delta in TEXTS[workload]:
                yield delta
        elif step <= TOOL_STEPS:
            tool_step: DeltaToolCalls = TOOL_CALL_DELTAS[step - 1]
            yield tool_step
        else:
            results = tool_results_in(messages)
            yield closing_answer(len(results), results[-1])

    agent: Agent[None, str] = Agent(FunctionModel(stream_function=stream))

    @agent.tool_plain  # async, like chatd's tool: a plain def would run in a worker thread
    async def echo(n: int) -> str:
        """Echo n back."""
        return f"result {n}"

    return agent


async def pydantic_ai_run(workload: str) -> Outcome:
    deltas: list[str] = []
    results: list[str] = []
    final = ""
    event: AgentStreamEvent | AgentRunResultEvent[str]
    async with agent_for(workload).run_stream_events(PROMPT) as events:
        async for event in events:
            # A text part's first delta arrives with its start event.
            if isinstance(event, PartStartEvent):
                if isinstance(event.part, TextPart):
                    deltas.append(event.part.content)
            elif isinstance(event, PartDeltaEvent):
                if isinstance(event.delta, TextPartDelta):
                    deltas.append(event.delta.content_delta)
            elif isinstance(event, FunctionToolResultEvent):
                results.append(str(event.part.content))
            elif isinstance(event, AgentRunResultEvent):
                final = event.result.output
    return Outcome(final, deltas, results)
