"""Function tools through the Responses API, and chat completions, with the official SDK."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)

from tests.service.conftest import LiveReplica

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


async def test_a_function_tool_round_trip(live: LiveReplica, client: openai.AsyncOpenAI) -> None:
    events = [
        event
        async for event in await client.responses.create(
            model="default",
            input='/call get_weather {"city": "Oslo"}',
            tools=[WEATHER],  # type: ignore[list-item]
            stream=True,
        )
    ]
    kinds = [type(e) for e in events]
    assert kinds[-5:] == [
        ResponseOutputItemAddedEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionCallArgumentsDoneEvent,
        ResponseOutputItemDoneEvent,
        ResponseCompletedEvent,
    ]
    asked = events[-1].response  # type: ignore[union-attr]
    assert asked.status == "completed"
    [call] = asked.output
    assert isinstance(call, ResponseFunctionToolCall) and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"}
    assert asked.tools[0].name == "get_weather"  # type: ignore[union-attr]

    answered = await client.responses.create(
        model="default",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert answered.status == "completed" and answered.output_text == "sunny, 21 C"
    assert answered.conversation is not None and asked.conversation is not None
    assert answered.conversation.id == asked.conversation.id
    async with live.client(client.api_key) as http:
        history = (await http.get(f"/api/chats/{asked.conversation.id}/messages")).json()
    tool_result = history["messages"][2]["parts"][0]
    assert tool_result["result"] == {"type": "text", "text": "sunny, 21 C"}

    # The chat waits for no one now: another output for the same call is refused.
    with pytest.raises(openai.APIStatusError) as again:
        await client.responses.create(
            model="default",
            previous_response_id=answered.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "x"}],
        )
    assert again.value.status_code == 409


async def test_a_chat_keeps_its_tools_and_instructions(client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="default", input="hi", instructions="Be brief.")
    with pytest.raises(openai.BadRequestError) as tools:
        await client.responses.create(
            model="default",
            input="next",
            previous_response_id=first.id,
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert tools.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as instructions:
        await client.responses.create(
            model="default", input="next", previous_response_id=first.id, instructions="Shout."
        )
    assert instructions.value.param == "instructions"


async def test_chat_completions_answer_from_the_history_the_client_sent(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(
        model="default",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "my name is Ann"},
            {"role": "assistant", "content": "Hello Ann."},
            {"role": "user", "content": "what is my name?"},
        ],
    )
    assert isinstance(completion, ChatCompletion)
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and "'what is my name?'" in (choice.message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_chat_completions_stream(client: openai.AsyncOpenAI) -> None:
    chunks = [
        chunk
        async for chunk in await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "'hello'" in text and len([c for c in chunks if c.choices]) > 3
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


async def test_chat_completions_refuse_what_they_cannot_run(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ends:
        await client.chat.completions.create(
            model="default", messages=[{"role": "assistant", "content": "I speak last"}]
        )
    assert ends.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f"}}],
        )
