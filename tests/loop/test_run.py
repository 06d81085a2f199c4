"""The agent loop's step, tool and persistence behaviour (spec agent-loop §2, §7.1)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from chatd.loop import (
    Call,
    ChatInterrupted,
    FakeModel,
    Interrupt,
    Metrics,
    PersistStepError,
    RunOptions,
    RunOutcome,
    Tool,
    ToolCall,
    ToolResponse,
    run,
    stream_from_parts,
    to_response_messages,
)
from chatd.loop._tools import exclusive_policy_errors
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    MessagePart,
    ReasoningPart,
    Role,
    SourcePart,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
    Usage,
)
from tests.loop.helpers import (
    Recorder,
    finish,
    published_recorder,
    reasoning,
    scripted_model,
    text,
    tool_call,
)
from tests.loop.promhelpers import sample_value

USER = [Message(Role.USER, [TextPart("hi")])]
TOOL_CALLS = FinishReason.TOOL_CALLS


def echo_tool(name: str = "echo") -> Tool:
    async def run_echo(call: ToolCall) -> ToolResponse:
        return ToolResponse.text(f"echo:{call.input}")

    return Tool(name, "echoes its input", run_echo)


def results_of(content: list[object]) -> list[ToolResultPart]:
    return [p for p in content if isinstance(p, ToolResultPart)]


async def test_run_requires_model_and_persist_callback() -> None:
    with pytest.raises(ValueError, match="chat model is required"):
        await run(RunOptions(persist_step=Recorder()))
    with pytest.raises(ValueError, match="persist step callback is required"):
        await run(RunOptions(model=scripted_model([finish()])))


async def test_run_active_tools_prepare_behavior() -> None:
    model = scripted_model([*text("t", "done"), finish()])
    persist = Recorder()
    history = [
        Message(Role.SYSTEM, [TextPart("sys1")]),
        Message(Role.SYSTEM, [TextPart("sys2")]),
        Message(Role.USER, [TextPart("u1")]),
        Message(Role.ASSISTANT, [TextPart("a1")]),
        Message(Role.USER, [TextPart("u2")]),
    ]
    await run(
        RunOptions(
            model=model,
            messages=history,
            tools=[echo_tool("read_file"), echo_tool("write_file")],
            active_tools=["read_file"],
            context_limit_fallback=4096,
            persist_step=persist,
        )
    )
    sent = model.calls[0]
    assert [t.name for t in sent.tools] == ["read_file"]
    assert sent.prompt == history
    assert len(persist.steps) == 1
    assert persist.steps[0].context_limit == 4096
    assert persist.steps[0].runtime >= 0


async def test_run_active_tools_rejects_disallowed_execution() -> None:
    ran: list[str] = []

    async def write(call: ToolCall) -> ToolResponse:
        ran.append(call.name)
        return ToolResponse.text("written")

    model = scripted_model([*tool_call("c1", "write_file"), finish(TOOL_CALLS)])
    persist = Recorder()
    await run(
        RunOptions(
            model=model,
            tools=[echo_tool("read_file"), Tool("write_file", "writes", write)],
            active_tools=["read_file"],
            persist_step=persist,
        )
    )
    assert ran == []
    [result] = results_of(persist.steps[0].content)
    assert result.output == ToolResultError("Tool not active in this turn: write_file")


async def test_run_unknown_tool_gives_error_result() -> None:
    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model([*tool_call("c1", "nope"), finish(TOOL_CALLS)]),
            persist_step=persist,
        )
    )
    [result] = results_of(persist.steps[0].content)
    assert result.output == ToolResultError("Tool not found: nope")


async def test_run_tool_that_raises_or_crashes_gives_error_result() -> None:
    async def raises(_call: ToolCall) -> ToolResponse:
        raise ValueError("bad path")

    async def crashes(_call: ToolCall) -> ToolResponse:
        raise GeneratorExit("boom")

    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [*tool_call("c1", "raises"), *tool_call("c2", "crashes"), finish(TOOL_CALLS)]
            ),
            tools=[Tool("raises", "", raises), Tool("crashes", "", crashes)],
            persist_step=persist,
        )
    )
    first, second = results_of(persist.steps[0].content)
    assert first.output == ToolResultError("bad path")
    assert isinstance(second.output, ToolResultError)
    assert (second.output.error or "").startswith("tool panicked: ")


async def test_process_step_stream_anthropic_usage_matches_final_delta() -> None:
    usage = Usage(
        input_tokens=200,
        output_tokens=75,
        total_tokens=275,
        cache_creation_tokens=30,
        cache_read_tokens=150,
    )
    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [
                    *text("t", "hi"),
                    finish(usage=Usage(input_tokens=1)),
                    finish(FinishReason.STOP, usage),
                ]
            ),
            persist_step=persist,
        )
    )
    assert persist.steps[0].usage == usage


async def test_content_is_assembled_in_block_close_order() -> None:
    parts = [
        StreamPart(StreamPartType.TEXT_START, id="a"),
        StreamPart(StreamPartType.REASONING_START, id="r", delta="th"),
        StreamPart(StreamPartType.TEXT_DELTA, id="a", delta="hel"),
        StreamPart(StreamPartType.REASONING_DELTA, id="r", delta="ink"),
        StreamPart(StreamPartType.REASONING_END, id="r"),
        StreamPart(StreamPartType.TEXT_DELTA, id="a", delta="lo"),
        StreamPart(StreamPartType.TEXT_DELTA, id="unknown", delta="ignored"),
        StreamPart(StreamPartType.TEXT_END, id="a"),
        StreamPart(StreamPartType.TEXT_END, id="never-opened"),
        StreamPart(StreamPartType.SOURCE, id="s", url="https://example.test", title="ex"),
        StreamPart(StreamPartType.WARNINGS),
        finish(),
    ]
    persist = Recorder()
    events, publish = published_recorder()
    await run(
        RunOptions(model=scripted_model(parts), persist_step=persist, publish_message_part=publish)
    )
    content = persist.steps[0].content
    assert content == [
        ReasoningPart("think"),
        TextPart("hello"),
        SourcePart(id="s", url="https://example.test", title="ex"),
    ]
    # Every delta is published live, even one for a block that was never opened.
    deltas = [p.text for role, p in events if isinstance(p, TextPart)]
    assert deltas == ["hel", "lo", "ignored"]


async def test_tool_input_is_taken_from_the_final_tool_call_part() -> None:
    parts = [
        StreamPart(StreamPartType.TOOL_INPUT_START, id="c1", tool_call_name="echo"),
        StreamPart(StreamPartType.TOOL_INPUT_DELTA, id="c1", delta='{"partial'),
        StreamPart(
            StreamPartType.TOOL_CALL, id="c1", tool_call_name="echo", tool_call_input='{"a":1}'
        ),
        finish(TOOL_CALLS),
    ]
    persist = Recorder()
    events, publish = published_recorder()
    await run(
        RunOptions(
            model=scripted_model(parts),
            tools=[echo_tool()],
            persist_step=persist,
            publish_message_part=publish,
        )
    )
    [result] = results_of(persist.steps[0].content)
    assert result.output == ToolResultText('echo:{"a":1}')
    delta_events = [p for _, p in events if isinstance(p, ToolCallPart) and p.args_delta]
    assert delta_events[0].args_delta == '{"partial' and delta_events[0].tool_name == "echo"


async def test_run_multi_step_tool_execution() -> None:
    model = scripted_model(
        [*tool_call("c1", "echo", '{"x":1}'), finish(TOOL_CALLS)],
        [*text("t", "all done"), finish()],
    )
    persist = Recorder()
    await run(
        RunOptions(
            model=model, messages=USER, tools=[echo_tool()], max_steps=5, persist_step=persist
        )
    )
    assert len(persist.steps) == 2
    second_prompt = model.calls[1].prompt
    assert [m.role for m in second_prompt] == [Role.USER, Role.ASSISTANT, Role.TOOL]
    assert isinstance(second_prompt[1].content[0], ToolCallPart)
    assert isinstance(second_prompt[2].content[0], ToolResultPart)
    first = persist.steps[0]
    assert first.tool_result_created_at["c1"] >= first.tool_call_created_at["c1"]


async def test_running_out_of_steps_is_success() -> None:
    model = scripted_model([*tool_call("c1", "echo"), finish(TOOL_CALLS)])
    persist = Recorder()
    await run(RunOptions(model=model, tools=[echo_tool()], max_steps=3, persist_step=persist))
    assert len(persist.steps) == 3
    # The last step's tool results are persisted even though no step follows.
    assert results_of(persist.steps[-1].content)


@pytest.mark.parametrize("max_steps", [0, -5])
async def test_non_positive_max_steps_means_one(max_steps: int) -> None:
    model = scripted_model([*tool_call("c1", "echo"), finish(TOOL_CALLS)])
    persist = Recorder()
    await run(
        RunOptions(model=model, tools=[echo_tool()], max_steps=max_steps, persist_step=persist)
    )
    assert len(model.calls) == 1


async def test_tool_calls_with_stop_finish_reason_do_not_run() -> None:
    ran = []

    async def tool(call: ToolCall) -> ToolResponse:
        ran.append(call.id)
        return ToolResponse.text("x")

    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model([*tool_call("c1", "t"), finish(FinishReason.STOP)]),
            tools=[Tool("t", "", tool)],
            max_steps=5,
            persist_step=persist,
        )
    )
    assert ran == []
    assert len(persist.steps) == 1
    assert isinstance(persist.steps[0].content[0], ToolCallPart)


async def test_empty_step_is_not_persisted() -> None:
    persist = Recorder()
    await run(RunOptions(model=scripted_model([finish()]), persist_step=persist))
    assert persist.steps == []


async def test_stop_after_tool_success() -> None:
    model = scripted_model([*tool_call("c1", "finish_task"), finish(TOOL_CALLS)])
    persist = Recorder()
    outcome = await run(
        RunOptions(
            model=model,
            tools=[echo_tool("finish_task")],
            stop_after_tools={"finish_task"},
            max_steps=5,
            persist_step=persist,
        )
    )
    assert outcome is RunOutcome.STOP_AFTER_TOOL
    assert len(model.calls) == 1
    assert len(persist.steps) == 1
    assert results_of(persist.steps[0].content)[0].tool_name == "finish_task"


async def test_stop_after_tool_ignores_error_results() -> None:
    async def failing(_call: ToolCall) -> ToolResponse:
        return ToolResponse.error("not yet")

    model = scripted_model(
        [*tool_call("c1", "finish_task"), finish(TOOL_CALLS)], [*text("t", "ok"), finish()]
    )
    persist = Recorder()
    await run(
        RunOptions(
            model=model,
            tools=[Tool("finish_task", "", failing)],
            stop_after_tools={"finish_task"},
            max_steps=5,
            persist_step=persist,
        )
    )
    assert len(persist.steps) == 2


async def test_run_parallel_tool_execution_runs_concurrently_and_keeps_call_order() -> None:
    both_started = asyncio.Event()
    started = 0

    async def slow(call: ToolCall) -> ToolResponse:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()  # deadlocks unless the two calls run concurrently
        if call.id == "c1":
            await asyncio.sleep(0.01)  # the first call finishes last
        return ToolResponse.text(call.id)

    persist = Recorder()
    events, publish = published_recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [*tool_call("c1", "slow"), *tool_call("c2", "slow"), finish(TOOL_CALLS)]
            ),
            tools=[Tool("slow", "", slow)],
            persist_step=persist,
            publish_message_part=publish,
        )
    )
    step = persist.steps[0]
    assert [r.tool_call_id for r in results_of(step.content)] == ["c1", "c2"]
    for call_id in ("c1", "c2"):
        assert step.tool_result_created_at[call_id] >= step.tool_call_created_at[call_id]
    published_results = [p.tool_call_id for role, p in events if role == "tool"]
    assert published_results == ["c1", "c2"]


def test_exclusive_tool_policy_mixed_batch_errors() -> None:
    calls = [ToolCallPart("c1", "read_file"), ToolCallPart("c2", "advisor")]
    assert exclusive_policy_errors(calls, frozenset({"advisor"})) == [
        "this tool was skipped because advisor must run alone in its batch. Retry your tool "
        "calls without advisor, or call advisor separately first.",
        "advisor must be called alone, without other tools in the same batch. Retry with "
        "only the advisor call.",
    ]


def test_exclusive_tool_policy_multiple_exclusive() -> None:
    calls = [ToolCallPart("c1", "advisor"), ToolCallPart("c2", "planner")]
    errors = exclusive_policy_errors(calls, frozenset({"advisor", "planner"}))
    assert errors is not None
    assert errors[0].startswith("advisor must be called alone")
    assert errors[1].startswith("planner must be called alone")


async def test_run_exclusive_tool_policy_violation_records_metrics_and_persists() -> None:
    ran: list[str] = []

    async def tool(call: ToolCall) -> ToolResponse:
        ran.append(call.name)
        return ToolResponse.text("x")

    reg = CollectorRegistry()
    model = scripted_model(
        [*tool_call("c1", "read_file"), *tool_call("c2", "advisor"), finish(TOOL_CALLS)],
        [*text("t", "retrying"), finish()],
        provider="fake",
        model="claude-test",
    )
    persist = Recorder()
    events, publish = published_recorder()
    await run(
        RunOptions(
            model=model,
            tools=[Tool("read_file", "", tool), Tool("advisor", "", tool)],
            exclusive_tool_names={"advisor"},
            max_steps=5,
            persist_step=persist,
            publish_message_part=publish,
            metrics=Metrics(reg),
        )
    )
    assert ran == []
    assert len(persist.steps) == 2
    results = results_of(persist.steps[0].content)
    assert [type(r.output) for r in results] == [ToolResultError, ToolResultError]
    assert set(persist.steps[0].tool_result_created_at) == {"c1", "c2"}
    assert len([p for role, p in events if role == "tool"]) == 2
    for name in ("advisor", "read_file"):
        labels = {"provider": "fake", "model": "claude-test", "tool_name": name}
        assert sample_value(reg, "coderd_chatd_tool_errors_total", labels) == 1


async def test_run_exclusive_tool_alone_succeeds_and_provider_calls_do_not_count() -> None:
    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [
                    *tool_call("p1", "web_search", provider_executed=True),
                    StreamPart(
                        StreamPartType.TOOL_RESULT,
                        id="p1",
                        tool_call_name="web_search",
                        provider_executed=True,
                    ),
                    *tool_call("c1", "advisor"),
                    finish(TOOL_CALLS),
                ]
            ),
            tools=[echo_tool("advisor")],
            exclusive_tool_names={"advisor"},
            persist_step=persist,
        )
    )
    local = [r for r in results_of(persist.steps[0].content) if not r.provider_executed]
    assert local[0].output == ToolResultText("echo:{}")


async def test_run_exclusive_tool_policy_blocks_mixed_with_dynamic_tool() -> None:
    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [*tool_call("c1", "advisor"), *tool_call("c2", "client_tool"), finish(TOOL_CALLS)]
            ),
            tools=[echo_tool("advisor")],
            dynamic_tool_names={"client_tool"},
            exclusive_tool_names={"advisor"},
            persist_step=persist,
        )
    )
    step = persist.steps[0]
    assert step.pending_dynamic_tool_calls == []
    assert all(r.is_error for r in results_of(step.content))


async def test_dynamic_tool_call_persists_pending_calls_and_stops() -> None:
    persist = Recorder()
    outcome = await run(
        RunOptions(
            model=scripted_model(
                [
                    *tool_call("c1", "echo"),
                    *tool_call("c2", "ask_user", '{"q":"?"}'),
                    finish(TOOL_CALLS),
                ]
            ),
            tools=[echo_tool()],
            dynamic_tool_names={"ask_user"},
            max_steps=5,
            persist_step=persist,
        )
    )
    assert outcome is RunOutcome.REQUIRES_ACTION
    [step] = persist.steps
    assert [(p.tool_call_id, p.tool_name, p.args) for p in step.pending_dynamic_tool_calls] == [
        ("c2", "ask_user", '{"q":"?"}')
    ]
    # The built-in call ran; the client's call has no result yet.
    assert [r.tool_call_id for r in results_of(step.content)] == ["c1"]


async def test_run_persist_step_error_propagates() -> None:
    persist = Recorder(fail_with=OSError("disk full"))
    with pytest.raises(PersistStepError, match="persist step: disk full"):
        await run(
            RunOptions(model=scripted_model([*text("t", "x"), finish()]), persist_step=persist)
        )


async def test_run_persist_step_interrupted_fallback() -> None:
    persist = Recorder(fail_with=ChatInterrupted())
    outcome = await run(
        RunOptions(model=scripted_model([*text("t", "x"), finish()]), persist_step=persist)
    )
    assert outcome is RunOutcome.INTERRUPTED
    assert len(persist.steps) == 2  # the normal persist, then the interrupted path


async def test_run_shutdown_during_tool_execution_raises_cancelled() -> None:
    started = asyncio.Event()

    async def hang(_call: ToolCall) -> ToolResponse:
        started.set()
        await asyncio.sleep(3600)
        return ToolResponse.text("never")

    persist = Recorder()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=scripted_model([*tool_call("c1", "hang"), finish(TOOL_CALLS)]),
                tools=[Tool("hang", "", hang)],
                persist_step=persist,
            )
        )
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert persist.steps == []  # plain cancellation persists nothing extra


def test_to_response_messages_provider_executed_tool_result_in_assistant_message() -> None:
    content = [
        TextPart("searching"),
        ToolCallPart("p1", "web_search", provider_executed=True),
        ToolResultPart("p1", "web_search", provider_executed=True),
        ToolCallPart("c1", "echo"),
        ToolResultPart("c1", "echo", output=ToolResultText("ok")),
    ]
    assistant, tool = to_response_messages(content)
    assert assistant.role == Role.ASSISTANT and len(assistant.content) == 4
    assert tool.role == Role.TOOL and tool.content == [content[4]]
    only_provider = to_response_messages(content[:3])
    assert len(only_provider) == 1 and len(only_provider[0].content) == 3


def test_to_response_messages_filters_empty_text_and_reasoning_parts() -> None:
    content = [
        TextPart(""),
        TextPart("   "),
        ReasoningPart("\n"),
        TextPart("  padded  "),
        ReasoningPart("real"),
        FilePart(b"x", "image/png"),
        SourcePart(url="https://example.test"),
    ]
    [assistant] = to_response_messages(content)
    assert assistant.content == [TextPart("  padded  "), ReasoningPart("real"), content[5]]
    assert to_response_messages([TextPart(" ")]) == []


async def test_run_prepare_messages_injects_system_context_mid_loop() -> None:
    seen: list[int] = []

    def prepare(history: list[Message]) -> list[Message] | None:
        seen.append(len(history))
        if len(seen) == 2:
            return [*history, Message(Role.SYSTEM, [TextPart("new context")])]
        return None

    model = scripted_model(
        [*tool_call("c1", "echo"), finish(TOOL_CALLS)],
        [*tool_call("c2", "echo"), finish(TOOL_CALLS)],
        [*text("t", "done"), finish()],
    )
    await run(
        RunOptions(
            model=model,
            messages=USER,
            tools=[echo_tool()],
            max_steps=5,
            persist_step=Recorder(),
            prepare_messages=prepare,
        )
    )
    assert len(seen) == 3  # called before every step
    assert model.calls[0].prompt[-1].role == Role.USER
    assert model.calls[1].prompt[-1].content == [TextPart("new context")]
    # The injected message stays for later steps: None keeps what is there.
    assert any(m.content == [TextPart("new context")] for m in model.calls[2].prompt)


async def test_execute_single_tool_media_base64_encoding() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"

    async def image(_call: ToolCall) -> ToolResponse:
        return ToolResponse(type="image", data=png, media_type="image/png", content="cap\udcff")

    async def bad_text(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("ok\udcfe")

    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model(
                [*tool_call("c1", "image"), *tool_call("c2", "bad_text"), finish(TOOL_CALLS)]
            ),
            tools=[Tool("image", "", image), Tool("bad_text", "", bad_text)],
            persist_step=persist,
        )
    )
    media, textual = results_of(persist.steps[0].content)
    assert media.output == ToolResultMedia(
        data=base64.b64encode(png).decode(), media_type="image/png", text="cap\ufffd"
    )
    assert textual.output == ToolResultText("ok\ufffd")


async def test_run_opening_failure_that_is_not_retryable_raises_stream_error() -> None:
    async def stream_fn(_call: Call) -> object:
        raise RuntimeError("status 401: invalid api key")

    model = FakeModel(stream_fn=stream_fn, provider_name="openai")  # type: ignore[arg-type]
    from chatd.loop import StreamError

    with pytest.raises(StreamError) as info:
        await run(RunOptions(model=model, persist_step=Recorder()))
    assert info.value.classified.kind == "auth"
    assert info.value.classified.status_code == 401
    assert str(info.value).startswith("stream response: ")


async def test_error_stream_part_fails_the_attempt() -> None:
    from chatd.loop import StreamError

    model = scripted_model(
        [*text("t", "par"), StreamPart(StreamPartType.ERROR, error=RuntimeError("invalid model"))]
    )
    with pytest.raises(StreamError) as info:
        await run(RunOptions(model=model, persist_step=Recorder()))
    assert info.value.classified.kind == "config"


async def test_stream_from_parts_model_records_calls() -> None:
    model = FakeModel(stream_fn=lambda _c: stream_from_parts([finish()]))
    await run(RunOptions(model=model, messages=USER, persist_step=Recorder()))
    assert model.calls[0].prompt == USER


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"anthropic": {"context_window": 200000}}, 200000),
        ({"openai": {"contextLimit": "128000"}}, 128000),
        ({"x": [{"maxInputTokens": 8192.0}, {"context_length": 4096}]}, 8192),
        ({"google": {"inputTokenLimit": 1048576, "outputTokenLimit": 65536}}, 1048576),
        ({"m": {"maxContextTokens": 32000, "max_context": 16000}}, 32000),
        ({"m": {"context_window_size": 1000}}, 1000),
        ({"m": {"contextWindow": 0, "context_limit": -3, "limit": 999}}, None),
        ({"m": {"context_limit": True, "context_window": 1.5}}, None),
        ({"window": 1000, "tokens": 5}, None),
        ({}, None),
    ],
)
def test_find_context_limit(metadata: dict[str, object], expected: int | None) -> None:
    from chatd.loop import find_context_limit

    assert find_context_limit(metadata) == expected


async def test_context_limit_from_finish_metadata_beats_the_fallback() -> None:
    persist = Recorder()
    parts = [
        *text("t", "x"),
        StreamPart(
            StreamPartType.FINISH,
            finish_reason=FinishReason.STOP,
            provider_metadata={"openai": {"context_window": 400000}},
        ),
    ]
    await run(
        RunOptions(model=scripted_model(parts), context_limit_fallback=4096, persist_step=persist)
    )
    assert persist.steps[0].context_limit == 400000
    persist2 = Recorder()
    await run(RunOptions(model=scripted_model([*text("t", "x"), finish()]), persist_step=persist2))
    assert persist2.steps[0].context_limit is None


def _web_search(call_id: str = "ws1") -> list[StreamPart]:
    return [
        *tool_call(call_id, "web_search", '{"q":"x"}', provider_executed=True),
        StreamPart(
            StreamPartType.TOOL_RESULT,
            id=call_id,
            tool_call_name="web_search",
            provider_executed=True,
        ),
    ]


async def test_run_provider_executed_tool_result_timestamps() -> None:
    persist = Recorder()
    await run(
        RunOptions(
            model=scripted_model([*_web_search(), *text("t", "found"), finish()]),
            persist_step=persist,
        )
    )
    step = persist.steps[0]
    assert "ws1" in step.tool_call_created_at and "ws1" in step.tool_result_created_at
    assert step.tool_result_created_at["ws1"] >= step.tool_call_created_at["ws1"]


class ShapingModel(FakeModel):
    """A FakeModel with the prompt and step hooks of `ModelHooks`.

    Its prompts end in a "shaped" system message; its steps keep no reasoning.
    """

    def prepare_prompt(self, messages: list[Message]) -> list[Message]:
        return [*messages, Message(Role.SYSTEM, [TextPart("shaped")])]

    def persistable_content(self, content: list[MessagePart]) -> list[MessagePart]:
        return [p for p in content if not isinstance(p, ReasoningPart)]


def _shaped(prompt: list[Message]) -> int:
    return sum(m.content == [TextPart("shaped")] for m in prompt)


async def test_run_sends_the_prompt_the_model_prepares_and_keeps_its_history() -> None:
    model = scripted_model(
        [*tool_call("c1", "echo"), finish(TOOL_CALLS)],
        [*text("t", "done"), finish()],
        model_type=ShapingModel,
    )
    history = list(USER)
    await run(
        RunOptions(
            model=model,
            messages=history,
            tools=[echo_tool()],
            max_steps=3,
            persist_step=Recorder(),
        )
    )
    first, second = model.calls
    assert first.prompt == [*USER, Message(Role.SYSTEM, [TextPart("shaped")])]
    # Prepared before every request from the loop's own history: no shaping piles up.
    assert [m.role for m in second.prompt] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.SYSTEM]
    assert _shaped(second.prompt) == 1
    assert history == USER


async def test_run_persists_and_sends_back_what_the_model_keeps_of_a_step() -> None:
    model = scripted_model(
        [*reasoning("r", "hmm"), *tool_call("c1", "echo"), finish(TOOL_CALLS)],
        [*reasoning("r", "hmm"), finish()],
        model_type=ShapingModel,
    )
    persist = Recorder()
    await run(RunOptions(model=model, tools=[echo_tool()], max_steps=3, persist_step=persist))
    # The second step was reasoning only: kept nothing, so nothing was persisted.
    [step] = persist.steps
    assert [type(p) for p in step.content] == [ToolCallPart, ToolResultPart]
    parts = [p for m in model.calls[1].prompt for p in m.content]
    assert not any(isinstance(p, ReasoningPart) for p in parts)


async def test_run_interrupted_step_keeps_what_the_model_keeps_then_closes_its_calls() -> None:
    parts = [*reasoning("r", "hmm"), *tool_call("c1", "read_file")]
    persist = await _interrupted_run(parts, ShapingModel)
    [step] = persist.steps
    assert [type(p) for p in step.content] == [ToolCallPart, ToolResultPart]
    assert results_of(step.content)[0].is_error


async def test_run_without_hooks_sends_and_persists_steps_as_they_are() -> None:
    # The loop knows no provider: a name alone changes nothing.
    model = scripted_model(
        [*tool_call("p1", "web_search", provider_executed=True), finish()], provider="anthropic"
    )
    persist = Recorder()
    history = [Message(Role.SYSTEM, [TextPart("sys")]), *USER]
    await run(RunOptions(model=model, messages=history, persist_step=persist))
    assert model.calls[0].prompt == history
    assert [p.tool_call_id for p in persist.steps[0].content] == ["p1"]


async def test_run_interrupted_provider_executed_call_gets_no_synthetic_result() -> None:
    # Upstream TestRun_AnthropicInterruptedWebSearchDoesNotPersistSyntheticResult, for
    # a model without hooks: the loop can close local calls only (a web search's
    # result is the provider's); dropping the call itself is the model's hook.
    persist = await _interrupted_run(
        [
            *tool_call("ws1", "web_search", provider_executed=True),
            *tool_call("c1", "read_file"),
        ]
    )
    [step] = persist.steps
    assert [p.tool_call_id for p in step.content if isinstance(p, ToolCallPart)] == ["ws1", "c1"]
    [result] = results_of(step.content)
    assert result.tool_call_id == "c1" and result.is_error and not result.provider_executed


async def _interrupted_run(
    parts: list[StreamPart], model_type: type[FakeModel] = FakeModel
) -> Recorder:
    streamed = asyncio.Event()

    async def partial() -> AsyncIterator[StreamPart]:
        for part in parts:
            yield part
        streamed.set()
        await asyncio.sleep(3600)

    interrupt = Interrupt()
    persist = Recorder()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=model_type(stream_fn=lambda _c: partial()),
                persist_step=persist,
                interrupt=interrupt,
            )
        )
    )
    await streamed.wait()
    interrupt.interrupt()
    outcome = await task
    assert outcome is RunOutcome.INTERRUPTED
    return persist
