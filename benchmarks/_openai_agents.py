"""openai-agents on the workload: `Agent` over a `Model` whose `stream_response` replays
prebuilt Responses-API events, driven by `Runner.run_streamed()` through `stream_events()`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import (
    Agent,
    ModelResponse,
    RawResponsesStreamEvent,
    RunConfig,
    RunItemStreamEvent,
    Runner,
    Tool,
    function_tool,
)
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from benchmarks._workload import (
    CALL_IDS,
    PROMPT,
    TEXTS,
    TOOL_ARGS,
    TOOL_STEPS,
    Outcome,
    closing_answer,
)


def fake_response(output: list[Any]) -> Response:
    return Response(
        id="resp_fake",
        created_at=0,
        model="fake",
        object="response",
        output=output,
        tool_choice="auto",
        tools=[],
        top_p=None,
        parallel_tool_calls=False,
    )


def text_events(deltas: list[str]) -> list[Any]:
    text = "".join(deltas)
    done_part = ResponseOutputText(type="output_text", text=text, annotations=[])
    message = ResponseOutputMessage(
        id="msg_fake", type="message", role="assistant", status="completed", content=[done_part]
    )
    empty_message = message.model_copy(update={"content": [], "status": "in_progress"})
    empty_part = ResponseOutputText(type="output_text", text="", annotations=[])
    head: list[Any] = [
        ResponseCreatedEvent(
            type="response.created", response=fake_response([]), sequence_number=0
        ),
        ResponseOutputItemAddedEvent(
            type="response.output_item.added", item=empty_message, output_index=0, sequence_number=1
        ),
        ResponseContentPartAddedEvent(
            type="response.content_part.added",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            part=empty_part,
            sequence_number=2,
        ),
    ]
    body = [
        ResponseTextDeltaEvent(
            type="response.output_text.delta",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            delta=delta,
            logprobs=[],
            sequence_number=3 + i,
        )
        for i, delta in enumerate(deltas)
    ]
    seq = 3 + len(deltas)
    tail: list[Any] = [
        ResponseTextDoneEvent(
            type="response.output_text.done",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            text=text,
            logprobs=[],
            sequence_number=seq,
        ),
        ResponseContentPartDoneEvent(
            type="response.content_part.done",
            item_id="msg_fake",
            output_index=0,
            content_index=0,
            part=done_part,
            sequence_number=seq + 1,
        ),
        ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=message, output_index=0, sequence_number=seq + 2
        ),
        ResponseCompletedEvent(
            type="response.completed", response=fake_response([message]), sequence_number=seq + 3
        ),
    ]
    return head + body + tail


def tool_step_events(k: int) -> list[Any]:
    call = ResponseFunctionToolCall(
        id=f"fc_{k}",
        type="function_call",
        call_id=CALL_IDS[k],
        name="echo",
        arguments=TOOL_ARGS[k],
        status="completed",
    )
    added = call.model_copy(update={"arguments": "", "status": "in_progress"})
    return [
        ResponseCreatedEvent(
            type="response.created", response=fake_response([]), sequence_number=0
        ),
        ResponseOutputItemAddedEvent(
            type="response.output_item.added", item=added, output_index=0, sequence_number=1
        ),
        ResponseFunctionCallArgumentsDeltaEvent(
            type="response.function_call_arguments.delta",
            item_id=f"fc_{k}",
            output_index=0,
            delta=TOOL_ARGS[k],
            sequence_number=2,
        ),
        ResponseFunctionCallArgumentsDoneEvent(
            type="response.function_call_arguments.done",
            item_id=f"fc_{k}",
            output_index=0,
            name="echo",
            arguments=TOOL_ARGS[k],
            sequence_number=3,
        ),
        ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=call, output_index=0, sequence_number=4
        ),
        ResponseCompletedEvent(
            type="response.completed", response=fake_response([call]), sequence_number=5
        ),
    ]


TEXT_EVENTS = {name: text_events(deltas) for name, deltas in TEXTS.items()}
TOOL_STEP_EVENTS = [tool_step_events(k) for k in range(TOOL_STEPS)]


class FakeResponsesModel(Model):
    """A Responses-API model that replays prebuilt stream events, one list per step."""

    def __init__(self, workload: str) -> None:
        self.workload = workload
        self.step = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raise NotImplementedError("the benchmark only streams")

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        self.step += 1
        if self.workload in TEXT_EVENTS:
            events = TEXT_EVENTS[self.workload]
        elif self.step <= TOOL_STEPS:
            events = TOOL_STEP_EVENTS[self.step - 1]
        else:
            assert isinstance(input, list)
            results = [
                str(item.get("output"))
                for item in input
                if item.get("type") == "function_call_output"
            ]
            events = text_events([closing_answer(len(results), results[-1])])
        for event in events:
            yield event


@function_tool  # async, like chatd's tool: a plain def would run in a worker thread
async def echo(n: int) -> str:
    """Echo n back."""
    return f"result {n}"


RUN_CONFIG = RunConfig(tracing_disabled=True)


async def openai_agents_run(workload: str) -> Outcome:
    agent = Agent(name="bench", model=FakeResponsesModel(workload), tools=[echo])
    result = Runner.run_streamed(agent, PROMPT, max_turns=TOOL_STEPS + 2, run_config=RUN_CONFIG)
    deltas: list[str] = []
    results: list[str] = []
    async for event in result.stream_events():
        if isinstance(event, RawResponsesStreamEvent):
            if isinstance(event.data, ResponseTextDeltaEvent):
                deltas.append(event.data.delta)
        elif isinstance(event, RunItemStreamEvent) and event.name == "tool_output":
            results.append(str(getattr(event.item, "output", None)))
    return Outcome(str(result.final_output), deltas, results)
