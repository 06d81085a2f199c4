"""The Responses API with the official SDK as the only client (issue 24's acceptance)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from tests.openai_compat.conftest import SLOW, sdk
from tests.service.conftest import LiveReplica, running_replica

ITEM = [ResponseOutputItemAddedEvent, ResponseContentPartAddedEvent]
ITEM_DONE = [ResponseContentPartDoneEvent, ResponseOutputItemDoneEvent]


def _collapsed(events: list[ResponseStreamEvent]) -> list[type]:
    """Event classes in order, runs of the same delta class as one."""
    kinds: list[type] = []
    for event in events:
        if not (kinds and kinds[-1] is type(event) and "Delta" in type(event).__name__):
            kinds.append(type(event))
    return kinds


async def _read(stream: openai.AsyncStream[ResponseStreamEvent]) -> list[ResponseStreamEvent]:
    return [event async for event in stream]


async def test_a_streamed_response_yields_the_documented_events_in_order(
    client: openai.AsyncOpenAI,
) -> None:
    events = await _read(await client.responses.create(model="default", input="hello", stream=True))
    assert _collapsed(events) == [
        ResponseCreatedEvent,
        ResponseInProgressEvent,
        *ITEM,
        ResponseReasoningTextDeltaEvent,
        ResponseReasoningTextDoneEvent,
        *ITEM_DONE,
        *ITEM,
        ResponseTextDeltaEvent,
        ResponseTextDoneEvent,
        *ITEM_DONE,
        ResponseCompletedEvent,
    ]
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers)), "sequence numbers strictly increase"
    deltas = "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))
    done = events[-1]
    assert isinstance(done, ResponseCompletedEvent)
    response = done.response
    assert response.status == "completed" and response.output_text == deltas
    assert "'hello'" in deltas
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.content
    assert isinstance(message, ResponseOutputMessage) and message.status == "completed"
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


async def test_create_waits_for_the_turn_and_retrieve_shows_the_same_response(
    client: openai.AsyncOpenAI,
) -> None:
    created = await client.responses.create(model="default", input="hello")
    assert isinstance(created, Response) and created.status == "completed"
    assert "'hello'" in created.output_text
    retrieved = await client.responses.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()


async def test_previous_response_id_continues_the_same_chat(
    live: LiveReplica, client: openai.AsyncOpenAI
) -> None:
    first = await client.responses.create(model="default", input="first", instructions="Be brief.")
    second = await client.responses.create(
        model="default", input="second", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    assert first.conversation is not None and second.conversation is not None
    chat_id = first.conversation.id
    assert second.conversation.id == chat_id
    assert "'second'" in second.output_text and second.instructions == "Be brief."
    # chatd's own API shows one chat with both turns.
    async with live.client(client.api_key) as http:
        history = (await http.get(f"/api/chats/{chat_id}/messages")).json()["messages"]
    assert [(m["role"], m["parts"][0].get("text")) for m in history][::2] == [
        ("user", "first"),
        ("user", "second"),
    ]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


async def test_a_background_stream_resumes_after_a_drop_with_every_event_once(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.responses.create(
        model="slow", input="tell me a story", stream=True, background=True
    )
    head: list[ResponseStreamEvent] = []
    async for event in stream:
        head.append(event)
        if sum(isinstance(e, ResponseTextDeltaEvent) for e in head) == 5:
            break
    await stream.close()  # the client goes away halfway; the turn runs on
    response_id = head[0].response.id  # type: ignore[union-attr]
    last = head[-1].sequence_number
    rest = await _read(
        await client.responses.retrieve(response_id, stream=True, starting_after=last)
    )
    assert rest and rest[0].sequence_number > last
    assert isinstance(rest[-1], ResponseCompletedEvent)
    whole = await _read(await client.responses.retrieve(response_id, stream=True))
    assert [e.model_dump() for e in head + rest] == [e.model_dump() for e in whole]
    text = "".join(e.delta for e in head + rest if isinstance(e, ResponseTextDeltaEvent))
    assert text == rest[-1].response.output_text


async def test_a_background_response_is_in_progress_then_retrieved_complete(
    client: openai.AsyncOpenAI,
) -> None:
    queued = await client.responses.create(model="slow", input="hello", background=True)
    assert queued.status == "in_progress" and queued.background is True
    async with asyncio.timeout(20):
        # Polling retrieve is how OpenAI documents waiting for a background response.
        while (response := await client.responses.retrieve(queued.id)).status == "in_progress":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert response.status == "completed" and "'hello'" in response.output_text


async def test_cancel_interrupts_the_turn_and_keeps_what_it_produced(
    live: LiveReplica, client: openai.AsyncOpenAI
) -> None:
    stream = await client.responses.create(
        model="slow", input="a long one", stream=True, background=True
    )
    async for event in stream:
        if isinstance(event, ResponseTextDeltaEvent):
            break
    await stream.close()
    response_id = event.item_id.split("_")[1]
    cancelled = await client.responses.cancel(f"resp_{response_id}")
    assert cancelled.status == "cancelled"
    assert cancelled.conversation is not None
    async with live.client(client.api_key) as http:
        chat = (await http.get(f"/api/chats/{cancelled.conversation.id}")).json()
    assert chat["status"] == "waiting"
    again = await client.responses.retrieve(cancelled.id)
    assert again.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(
            (await client.responses.create(model="default", input="done")).id
        )


async def test_input_items_and_delete(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="default",
        input=[
            {"role": "user", "content": "my name is Ann"},
            {"role": "assistant", "content": "Hello Ann."},
            {"role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]},
        ],
    )
    items = await client.responses.input_items.list(response.id, order="asc")
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [  # type: ignore[union-attr]
        ("message", "user", "my name is Ann"),
        ("message", "assistant", "Hello Ann."),
        ("message", "user", "what is my name?"),
    ]
    await client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_another_users_response_is_not_found(
    live: LiveReplica, client: openai.AsyncOpenAI
) -> None:
    response = await client.responses.create(model="default", input="mine")
    async with sdk(live.url, await live.token("bob")) as bob:
        with pytest.raises(openai.NotFoundError) as caught:
            await bob.responses.retrieve(response.id)
        assert caught.value.code == "not_found"
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(
                model="default", input="hijack", previous_response_id=response.id
            )
        assert response.conversation is not None
        with pytest.raises(openai.NotFoundError):
            await bob.responses.create(
                model="default", input="hijack", conversation=response.conversation.id
            )


async def test_models_and_errors_take_openai_shapes(
    live: LiveReplica, client: openai.AsyncOpenAI
) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == ["scripted:default", "slow"]
    assert (await client.models.retrieve("slow")).owned_by == "scripted"
    async with sdk(live.url, "not-a-token") as stranger:
        with pytest.raises(openai.AuthenticationError) as auth:
            await stranger.models.list()
    assert auth.value.code == "unauthorized"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.responses.create(model="no-such-model", input="x")
    assert bad.value.code == "invalid_model"
    assert isinstance(bad.value.body, dict) and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as empty:
        await client.responses.create(model="default", input="   ")
    assert empty.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.responses.create(
            model="default", input="x", extra_body={"no_such_parameter": 1}
        )
    assert unknown.value.param == "no_such_parameter"


async def test_cancelling_a_response_that_has_not_started_yet(tmp_path: Path) -> None:
    # One chat at a time: while a long reply runs, the next response waits, pending.
    async with running_replica(tmp_path, max_concurrent_chats=1) as live:
        await live.scripted_model("slow", **SLOW)
        async with sdk(live.url, await live.token("ann")) as client:
            long = " ".join(f"w{i}" for i in range(200))
            running = await client.responses.create(model="slow", input=long, background=True)
            # Only once it streams does it hold the one slot (both pending, either
            # could be claimed first).
            stream = await client.responses.retrieve(running.id, stream=True)
            async for event in stream:
                if event.type.endswith(".delta"):
                    break
            await stream.close()
            waiting = await client.responses.create(model="slow", input="next", background=True)
            cancelled = await client.responses.cancel(waiting.id)
            assert cancelled.status == "cancelled" and cancelled.output == []
            assert (await client.responses.retrieve(waiting.id)).status == "cancelled"
            assert (await client.responses.retrieve(running.id)).status == "in_progress"


async def test_the_v1_routes_have_their_own_openapi_document(live: LiveReplica) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        chatd = (await http.get("/openapi.json")).json()["paths"]
        v1 = (await http.get("/v1/openapi.json")).json()["paths"]
    assert not [path for path in chatd if path.startswith("/v1/")]
    assert "/v1/responses/{response_id}/cancel" in v1 and "/api/chats" not in v1
