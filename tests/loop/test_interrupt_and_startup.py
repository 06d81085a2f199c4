"""Interrupts, the startup guard, TTFT and retries inside the loop (agent-loop §2.8–§2.10, §4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chatd.errors import ClassifiedError, ErrorKind
from chatd.loop import (
    Call,
    FakeModel,
    Interrupt,
    ManualClock,
    Metrics,
    PersistedStep,
    RunOptions,
    RunOutcome,
    StreamError,
    Tool,
    ToolCall,
    ToolResponse,
    run,
    stream_from_parts,
)
from chatd.loop._run import INTERRUPTED_TOOL_RESULT, _StartupGuard
from chatd.types import (
    FinishReason,
    ReasoningPart,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
)
from tests.loop.helpers import Recorder, finish, reasoning, scripted_model, text, tool_call
from tests.loop.promhelpers import gather, series

RetryLog = list[tuple[int, BaseException, ClassifiedError, float]]


def retry_log() -> tuple[RetryLog, object]:
    log: RetryLog = []
    return log, lambda attempt, err, c, delay: log.append((attempt, err, c, delay))


async def wait_for(predicate: object, rounds: int = 1000) -> None:
    for _ in range(rounds):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_run_on_retry_enriches_provider() -> None:
    calls = 0

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("received status 429 from upstream")
        return stream_from_parts([*text("t", "ok"), finish()])

    log, on_retry = retry_log()
    clock = ManualClock()
    await run(
        RunOptions(
            model=FakeModel(stream_fn=stream_fn, provider_name="openai"),
            persist_step=Recorder(),
            on_retry=on_retry,  # type: ignore[arg-type]
            clock=clock,
        )
    )
    [(attempt, err, classified, delay)] = log
    assert (attempt, delay) == (1, 1.0)
    assert str(err) == "received status 429 from upstream"
    assert classified.provider == "openai"
    assert classified.kind == ErrorKind.RATE_LIMIT
    assert classified.retryable and classified.status_code == 429
    assert classified.message == "OpenAI is rate limiting requests."
    assert clock.sleeps == [1.0]  # backoff went through the injected clock


async def test_startup_guard_disarm_and_fire_race() -> None:
    for i in range(128):
        clock = ManualClock()
        target: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cancels = 0

        def count(_f: asyncio.Future[None]) -> None:
            nonlocal cancels
            cancels += 1 if _f.cancelled() else 0

        target.add_done_callback(count)
        guard = _StartupGuard(clock, 1.0)
        guard.target = target
        if i % 2:
            guard.disarm()
            clock.advance(1.0)
        else:
            clock.advance(1.0)
            guard.disarm()
        clock.advance(5.0)
        await asyncio.sleep(0)
        assert cancels == (0 if i % 2 else 1)
        assert guard.fired == (i % 2 == 0)
        assert clock.pending_timers == 0


async def test_startup_guard_disarm_preserves_permanent_error() -> None:
    clock = ManualClock()

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        async def parts() -> AsyncIterator[StreamPart]:
            yield StreamPart(StreamPartType.TEXT_START, id="t")
            clock.advance(120)  # long after the first part: the guard is disarmed
            raise RuntimeError("invalid model")

        return parts()

    with pytest.raises(StreamError) as info:
        await run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn, provider_name="openai"),
                persist_step=Recorder(),
                clock=clock,
            )
        )
    assert info.value.classified.kind == ErrorKind.CONFIG


async def test_run_retries_startup_timeout_while_opening_stream() -> None:
    clock = ManualClock()
    opened = asyncio.Event()
    calls = 0

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        if calls == 1:
            opened.set()
            await asyncio.sleep(3600)  # the provider never answers
        return stream_from_parts([*text("t", "late but fine"), finish()])

    log, on_retry = retry_log()
    persist = Recorder()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn, provider_name="openai"),
                persist_step=persist,
                on_retry=on_retry,  # type: ignore[arg-type]
                clock=clock,
            )
        )
    )
    await opened.wait()
    clock.advance(60)
    await task
    [(attempt, _err, classified, _delay)] = log
    assert attempt == 1
    assert classified.kind == ErrorKind.STARTUP_TIMEOUT
    assert classified.retryable
    assert classified.message == "OpenAI did not start responding in time."
    assert calls == 2
    assert persist.steps[0].content == [TextPart("late but fine")]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_run_http2_transport_error_classified_as_retryable_timeout(provider: str) -> None:
    calls = 0

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("http2: client connection force closed via ClientConn.Close")
        return stream_from_parts([finish()])

    log, on_retry = retry_log()
    await run(
        RunOptions(
            model=FakeModel(stream_fn=stream_fn, provider_name=provider),
            persist_step=Recorder(),
            on_retry=on_retry,  # type: ignore[arg-type]
            clock=ManualClock(),
        )
    )
    [(_, _, classified, _)] = log
    assert classified.kind == ErrorKind.TIMEOUT and classified.retryable
    assert classified.provider == provider


async def test_run_retries_startup_timeout_before_first_part() -> None:
    clock = ManualClock()
    waiting = asyncio.Event()
    calls = 0

    async def silent() -> AsyncIterator[StreamPart]:
        waiting.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # The provider reports the abort as an error part, as some SDKs do.
            yield StreamPart(StreamPartType.ERROR, error=RuntimeError("stream aborted"))
            return
        yield finish()

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        return silent() if calls == 1 else stream_from_parts([finish()])

    log, on_retry = retry_log()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn),
                persist_step=Recorder(),
                on_retry=on_retry,  # type: ignore[arg-type]
                clock=clock,
            )
        )
    )
    await waiting.wait()
    clock.advance(60)
    await task
    assert [c.kind for _, _, c, _ in log] == [ErrorKind.STARTUP_TIMEOUT]


async def test_run_retries_startup_timeout_when_stream_closes_silently() -> None:
    clock = ManualClock()
    waiting = asyncio.Event()
    calls = 0

    async def closes_silently() -> AsyncIterator[StreamPart]:
        waiting.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # ends the stream with no parts at all
        yield finish()

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        return closes_silently() if calls == 1 else stream_from_parts([finish()])

    log, on_retry = retry_log()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn),
                persist_step=Recorder(),
                on_retry=on_retry,  # type: ignore[arg-type]
                clock=clock,
                startup_timeout=5,
            )
        )
    )
    await waiting.wait()
    clock.advance(5)
    await task
    assert [c.kind for _, _, c, _ in log] == [ErrorKind.STARTUP_TIMEOUT]
    assert calls == 2


async def test_run_first_part_disarms_startup_timeout_and_records_ttft() -> None:
    clock = ManualClock()
    reg = CollectorRegistry()
    first_sent = asyncio.Event()
    release = asyncio.Event()

    async def slow_after_first() -> AsyncIterator[StreamPart]:
        clock.advance(0.3)  # time to first token
        yield StreamPart(StreamPartType.TEXT_START, id="t")
        first_sent.set()
        await release.wait()
        yield StreamPart(StreamPartType.TEXT_END, id="t")
        yield finish()

    model = FakeModel(stream_fn=lambda _c: slow_after_first())
    log, on_retry = retry_log()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=model,
                persist_step=Recorder(),
                on_retry=on_retry,  # type: ignore[arg-type]
                clock=clock,
                metrics=Metrics(reg),
            )
        )
    )
    await first_sent.wait()
    clock.advance(600)  # far past the startup timeout: nothing happens now
    release.set()
    await task
    assert log == []
    assert len(model.calls) == 1
    ttft = gather(reg)["coderd_chatd_ttft_seconds"]
    [total] = [s for s in ttft.samples if s.name.endswith("_sum")]
    assert total.value == pytest.approx(0.3)
    assert series(ttft)[0].value == 1


async def test_run_panic_in_publish_message_part_releases_attempt() -> None:
    clock = ManualClock()

    def publish(_role: object, _part: object) -> None:
        raise ZeroDivisionError("publisher bug")

    with pytest.raises(StreamError) as info:
        await run(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: stream_from_parts(text("t", "x"))),
                persist_step=Recorder(),
                publish_message_part=publish,  # type: ignore[arg-type]
                clock=clock,
            )
        )
    assert isinstance(info.value.__cause__.__cause__, ZeroDivisionError)  # type: ignore[union-attr]
    assert clock.pending_timers == 0  # the attempt's startup timer was released


async def test_run_interrupted_step_persists_synthetic_tool_result() -> None:
    streamed = asyncio.Event()

    async def partial() -> AsyncIterator[StreamPart]:
        for part in [
            *text("t", "partial answer"),
            StreamPart(StreamPartType.TEXT_START, id="t2"),
            StreamPart(StreamPartType.TEXT_DELTA, id="t2", delta="still typ"),
            StreamPart(StreamPartType.TOOL_INPUT_START, id="c1", tool_call_name="write_file"),
            StreamPart(StreamPartType.TOOL_INPUT_DELTA, id="c1", delta='{"path":'),
        ]:
            yield part
        streamed.set()
        await asyncio.sleep(3600)

    interrupt = Interrupt()
    persist = Recorder()
    clock = ManualClock()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: partial()),
                persist_step=persist,
                interrupt=interrupt,
                clock=clock,
            )
        )
    )
    await streamed.wait()
    interrupt.interrupt()
    outcome = await task
    assert outcome is RunOutcome.INTERRUPTED
    [step] = persist.steps
    assert step.content[:2] == [TextPart("partial answer"), TextPart("still typ")]
    call = step.content[2]
    assert isinstance(call, ToolCallPart)
    assert (call.tool_call_id, call.tool_name, call.input) == ("c1", "write_file", '{"path":')
    result = step.content[3]
    assert isinstance(result, ToolResultPart)
    assert result.output == ToolResultError(INTERRUPTED_TOOL_RESULT)
    assert "c1" in step.tool_result_created_at
    assert "c1" not in step.tool_call_created_at  # the call never completed
    assert step.runtime == 0 and step.usage.input_tokens == 0


async def test_run_interrupted_during_tool_execution_persists_step() -> None:
    started = asyncio.Event()

    async def hang(_call: ToolCall) -> ToolResponse:
        started.set()
        await asyncio.sleep(3600)
        return ToolResponse.text("never")

    async def quick(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("quick result")

    interrupt = Interrupt()
    persist = Recorder()
    parts = [
        *reasoning("r", "let me look"),
        *text("t", "checking"),
        *tool_call("c1", "quick"),
        *tool_call("c2", "hang"),
        finish(FinishReason.TOOL_CALLS),
    ]
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: stream_from_parts(parts)),
                tools=[Tool("hang", "", hang), Tool("quick", "", quick)],
                persist_step=persist,
                interrupt=interrupt,
            )
        )
    )
    await started.wait()
    await asyncio.sleep(0)
    interrupt.interrupt()
    outcome = await task
    assert outcome is RunOutcome.INTERRUPTED
    [step] = persist.steps
    assert step.content[0] == ReasoningPart("let me look")
    assert step.content[1] == TextPart("checking")
    results = {p.tool_call_id: p for p in step.content if isinstance(p, ToolResultPart)}
    assert results["c2"].output == ToolResultError(INTERRUPTED_TOOL_RESULT)
    assert results["c1"].is_error is False  # the finished tool's real result is kept


async def test_interrupt_during_a_lone_tool_cancels_the_tool_never_the_run_task() -> None:
    started = asyncio.Event()
    tool_cancelled = False
    tool_task: asyncio.Task[object] | None = None
    cancelling_at_persist: list[int] = []

    async def hang(_call: ToolCall) -> ToolResponse:
        nonlocal tool_cancelled, tool_task
        tool_task = asyncio.current_task()
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            tool_cancelled = True
            raise
        return ToolResponse.text("never")

    persist = Recorder()

    async def persist_step(step: PersistedStep) -> None:
        task = asyncio.current_task()
        assert task is not None
        cancelling_at_persist.append(task.cancelling())
        await persist(step)

    interrupt = Interrupt()
    parts = [*tool_call("c1", "hang"), finish(FinishReason.TOOL_CALLS)]
    run_task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: stream_from_parts(parts)),
                tools=[Tool("hang", "", hang)],
                persist_step=persist_step,
                interrupt=interrupt,
            )
        )
    )
    await started.wait()
    interrupt.interrupt()
    outcome = await run_task
    assert outcome is RunOutcome.INTERRUPTED
    # The tool ran in a child of the run, and only that child was cancelled.
    assert tool_cancelled and tool_task is not None and tool_task is not run_task
    assert cancelling_at_persist == [0]
    [step] = persist.steps
    [result] = [p for p in step.content if isinstance(p, ToolResultPart)]
    assert result.output == ToolResultError(INTERRUPTED_TOOL_RESULT)


async def test_interrupt_during_retry_backoff_stops_at_once() -> None:
    sleeping = asyncio.Event()

    class SlowClock(ManualClock):
        async def sleep(self, delay: float) -> None:
            sleeping.set()
            await asyncio.sleep(3600)

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        raise RuntimeError("status 529 overloaded")

    interrupt = Interrupt()
    persist = Recorder()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn),
                persist_step=persist,
                interrupt=interrupt,
                clock=SlowClock(),
            )
        )
    )
    await sleeping.wait()
    interrupt.interrupt()
    outcome = await asyncio.wait_for(task, timeout=5)
    assert outcome is RunOutcome.INTERRUPTED
    assert persist.steps == []  # nothing was produced, nothing to persist


async def test_interrupt_before_run_starts_raises_without_calling_model() -> None:
    interrupt = Interrupt()
    interrupt.interrupt()
    model = FakeModel(stream_fn=lambda _c: stream_from_parts([finish()]))
    outcome = await run(RunOptions(model=model, persist_step=Recorder(), interrupt=interrupt))
    assert outcome is RunOutcome.INTERRUPTED
    assert model.calls == []


async def test_interrupted_persist_failure_is_reported_not_raised() -> None:
    streamed = asyncio.Event()

    async def partial() -> AsyncIterator[StreamPart]:
        yield StreamPart(StreamPartType.TEXT_START, id="t")
        yield StreamPart(StreamPartType.TEXT_DELTA, id="t", delta="x")
        streamed.set()
        await asyncio.sleep(3600)

    errors: list[BaseException] = []
    interrupt = Interrupt()
    task = asyncio.create_task(
        run(
            RunOptions(
                model=FakeModel(stream_fn=lambda _c: partial()),
                persist_step=Recorder(fail_with=OSError("db down")),
                interrupt=interrupt,
                on_interrupted_persist_error=errors.append,
            )
        )
    )
    await streamed.wait()
    interrupt.interrupt()
    outcome = await task
    assert outcome is RunOutcome.INTERRUPTED
    assert [str(e) for e in errors] == ["db down"]


async def test_canceled_stream_is_not_retried() -> None:
    reg = CollectorRegistry()

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        raise RuntimeError("context canceled")

    with pytest.raises(StreamError) as info:
        await run(
            RunOptions(
                model=FakeModel(stream_fn=stream_fn),
                persist_step=Recorder(),
                metrics=Metrics(reg),
            )
        )
    assert info.value.classified.kind == ErrorKind.GENERIC
    assert not info.value.classified.retryable
    assert series(gather(reg)["coderd_chatd_stream_retries_total"]) == []


class ChainModel(FakeModel):
    """A FakeModel whose provider options may continue a stored response ("resume_from")."""

    def break_response_chain(self, provider_options: dict[str, Any]) -> dict[str, Any] | None:
        if "resume_from" not in provider_options:
            return None
        return {k: v for k, v in provider_options.items() if k != "resume_from"}


async def test_chain_broken_retry_resends_full_history_without_the_chain() -> None:
    calls: list[Call] = []
    disabled: list[bool] = []

    async def stream_fn(call: Call) -> AsyncIterator[StreamPart]:
        calls.append(call)
        if len(calls) == 1:
            raise RuntimeError("Previous response with id 'resp_1' not found.")
        return stream_from_parts(
            [
                *text("t", "ok"),
                StreamPart(
                    StreamPartType.FINISH,
                    finish_reason=FinishReason.STOP,
                    provider_metadata={"fake": {"response_id": "resp_2"}},
                ),
            ]
        )

    log, on_retry = retry_log()
    persist = Recorder()
    await run(
        RunOptions(
            model=ChainModel(stream_fn=stream_fn),
            persist_step=persist,
            provider_options={"resume_from": "resp_1", "store": True},
            on_retry=on_retry,  # type: ignore[arg-type]
            disable_chain_mode=lambda: disabled.append(True),
            clock=ManualClock(),
        )
    )
    [(_, _, classified, _)] = log
    assert classified.chain_broken and classified.retryable
    assert calls[0].provider_options == {"resume_from": "resp_1", "store": True}
    assert calls[1].provider_options == {"store": True}
    # Left once: the step's end finds no chain any more.
    assert disabled == [True]
    assert persist.steps[0].provider_response_id == "resp_2"


async def test_chain_mode_is_left_after_the_first_step() -> None:
    disabled: list[bool] = []
    model = scripted_model(
        [*tool_call("c1", "echo"), finish(FinishReason.TOOL_CALLS)],
        [*text("t", "done"), finish()],
        model_type=ChainModel,
    )

    async def echo(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("ok")

    await run(
        RunOptions(
            model=model,
            tools=[Tool("echo", "", echo)],
            max_steps=3,
            persist_step=Recorder(),
            provider_options={"resume_from": "resp_1"},
            disable_chain_mode=lambda: disabled.append(True),
        )
    )
    assert model.calls[0].provider_options == {"resume_from": "resp_1"}
    assert model.calls[1].provider_options == {}
    assert disabled == [True]


async def test_a_model_without_the_chain_hook_keeps_its_provider_options() -> None:
    disabled: list[bool] = []
    model = scripted_model(
        [*tool_call("c1", "echo"), finish(FinishReason.TOOL_CALLS)],
        [*text("t", "done"), finish()],
        provider="openai",
    )

    async def echo(_call: ToolCall) -> ToolResponse:
        return ToolResponse.text("ok")

    options = {"openai": {"previous_response_id": "resp_1"}}
    await run(
        RunOptions(
            model=model,
            tools=[Tool("echo", "", echo)],
            max_steps=3,
            persist_step=Recorder(),
            provider_options=options,
            disable_chain_mode=lambda: disabled.append(True),
        )
    )
    assert [c.provider_options for c in model.calls] == [options, options]
    assert disabled == []
