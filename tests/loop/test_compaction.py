"""Context compaction (agent-loop §5, issue 5): when, what is kept, metrics, failure modes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import CollectorRegistry

from chatd.loop import (
    Call,
    FakeModel,
    GenerateResponse,
    Interrupt,
    Metrics,
    PersistedStep,
    RunOptions,
    RunOutcome,
    StreamError,
    run,
    stream_from_parts,
    to_response_messages,
)
from chatd.loop.compaction import (
    MAX_COMPACTIONS_PER_STEP,
    CompactionOptions,
    CompactionResult,
    clear_context,
    kept_tail_start,
    should_compact,
)
from chatd.types import (
    FinishReason,
    Message,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolResultText,
    Usage,
)
from tests.loop.helpers import Recorder, finish, published_recorder, text, tool_call
from tests.loop.promhelpers import gather, sample_value, series

SYS = Message(Role.SYSTEM, [TextPart("You are helpful.")])


def words(messages: Sequence[Message]) -> int:
    """The test's tokenizer: one token per whitespace-separated word of text and tool I/O."""
    total = 0
    for message in messages:
        for part in message.content:
            if isinstance(part, TextPart):
                total += len(part.text.split())
            elif isinstance(part, ToolCallPart):
                total += len(part.input.split())
            elif isinstance(part, ToolResultPart) and isinstance(part.output, ToolResultText):
                total += len(part.output.text.split())
    return total


def user(text_: str) -> Message:
    return Message(Role.USER, [TextPart(text_)])


def assistant(text_: str) -> Message:
    return Message(Role.ASSISTANT, [TextPart(text_)])


def summarizer(summary: str = "the user said hello") -> FakeModel:
    async def generate(_call: Call) -> GenerateResponse:
        return GenerateResponse(content=[TextPart(f"  {summary}  "), TextPart(" ")])

    return FakeModel(generate_fn=generate)


# --- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "limit", "threshold", "expected"),
    [
        (70, 100, 70, True),  # exactly at the boundary compacts
        (69, 100, 70, False),
        (7000, 10000, 70, True),
        (6999, 10000, 70, False),
        (1, 100, 0, True),  # threshold 0: any reported usage
        (0, 100, 0, False),  # no usage: never
        (100, 100, 100, False),  # 100 disables
        (50, 0, 70, False),  # no known limit: never
    ],
)
def test_should_compact(tokens: int, limit: int, threshold: int, expected: bool) -> None:
    assert should_compact(tokens, limit, threshold) is expected


def test_threshold_normalisation() -> None:
    assert CompactionOptions(threshold_percent=100).enabled is False
    assert CompactionOptions(threshold_percent=150).normalized_threshold == 70
    assert CompactionOptions(threshold_percent=-1).normalized_threshold == 70
    assert CompactionOptions(threshold_percent=0).normalized_threshold == 0


# --- what is kept ---------------------------------------------------------------------


def _tool_turn(call_id: str, answer: str) -> list[Message]:
    return [
        Message(Role.ASSISTANT, [ToolCallPart(call_id, "read_file", input="{}")]),
        Message(Role.TOOL, [ToolResultPart(call_id, "read_file", ToolResultText(answer))]),
    ]


def test_kept_tail_starts_at_the_last_user_message_when_it_fits() -> None:
    history = [
        SYS,
        user("first question"),
        *_tool_turn("c1", "one two three"),
        user("second question"),
        *_tool_turn("c2", "four five"),
    ]
    assert kept_tail_start(history, budget_tokens=100, count_tokens=words) == 4


def test_kept_tail_never_splits_a_tool_call_from_its_result() -> None:
    history = [SYS, user("q"), *_tool_turn("c1", "a b c d e f g h")]
    # Budget fits the tool message alone (8 words) but not the call + result pair
    # (9 words with "{}"): the only valid cut inside the turn is before the
    # assistant message, so nothing is kept verbatim.
    assert kept_tail_start(history, budget_tokens=8, count_tokens=words) == len(history)
    # With room for the pair, the cut is before the assistant message.
    assert kept_tail_start(history, budget_tokens=9, count_tokens=words) == 2
    assert kept_tail_start(history, budget_tokens=10, count_tokens=words) == 1


def test_kept_tail_excludes_older_turns_and_leading_system_prompts() -> None:
    history = [SYS, user("old"), assistant("old answer"), user("new")]
    assert kept_tail_start(history, budget_tokens=1000, count_tokens=words) == 3
    assert kept_tail_start([SYS], budget_tokens=1000, count_tokens=words) == 1


def test_clear_context_keeps_only_leading_system_prompts() -> None:
    summary = Message(Role.SYSTEM, [TextPart("old summary")], kind="summary")
    history = [SYS, summary, user("a"), assistant("b")]
    assert clear_context(history) == [SYS]


# --- through the loop -----------------------------------------------------------------


def _model_with_usage(
    steps: Sequence[Sequence[StreamPart]], summary: str = "summary of work"
) -> FakeModel:
    calls = 0

    def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        parts = steps[min(calls, len(steps) - 1)]
        calls += 1
        return stream_from_parts(parts)

    async def generate(_call: Call) -> GenerateResponse:
        return GenerateResponse(content=[TextPart(summary)])

    return FakeModel(stream_fn=stream_fn, generate_fn=generate, provider_name="p", model_name="m")


def _tool_step(input_tokens: int) -> list[StreamPart]:
    return [
        *tool_call("c1", "echo"),
        finish(FinishReason.TOOL_CALLS, Usage(input_tokens=input_tokens)),
    ]


async def _echo(call: object) -> object:
    from chatd.loop import ToolResponse

    return ToolResponse.text("ok")


def _echo_tool() -> object:
    from chatd.loop import Tool

    return Tool("echo", "", _echo)  # type: ignore[arg-type]


async def _run_two_steps(
    first_step_tokens: int,
    options: CompactionOptions,
    reg: CollectorRegistry,
    model: FakeModel | None = None,
    interrupt: Interrupt | None = None,
) -> tuple[FakeModel, Recorder, list[CompactionResult]]:
    persisted: list[CompactionResult] = []

    async def persist_compaction(result: CompactionResult) -> None:
        persisted.append(result)

    from dataclasses import replace

    options = replace(options, persist=persist_compaction, count_tokens=words)
    model = model or _model_with_usage(
        [_tool_step(first_step_tokens), [*text("t", "done"), finish()]]
    )
    recorder = Recorder()
    recorder.outcome = await run(
        RunOptions(
            model=model,
            messages=[SYS, user("please work")],
            tools=[_echo_tool()],  # type: ignore[list-item]
            max_steps=2,
            persist_step=recorder,
            metrics=Metrics(reg),
            compaction=options,
            interrupt=interrupt,
        )
    )
    return model, recorder, persisted


def _compactions(reg: CollectorRegistry, result: str) -> float | None:
    labels = {"provider": "p", "model": "m", "result": result}
    return sample_value(reg, "coderd_chatd_compaction_total", labels)


async def test_compaction_when_threshold_reached_records_success_and_continues() -> None:
    reg = CollectorRegistry()
    # Step 1 reports 69 tokens; the tool call ("{}") and result ("ok") add 2: 71 >= 70.
    model, recorder, persisted = await _run_two_steps(69, CompactionOptions(context_limit=100), reg)
    assert _compactions(reg, "success") == 1
    [result] = persisted
    assert result.context_tokens == 71 and result.context_limit == 100
    assert result.usage_percent == pytest.approx(71.0)
    assert result.threshold_percent == 70
    second_prompt = model.calls[1].prompt
    assert second_prompt[0] == SYS
    assert second_prompt[1].kind == "summary" and second_prompt[1].role == Role.SYSTEM
    assert "summary of work" in second_prompt[1].content[0].text  # type: ignore[union-attr]
    # The current turn (user message + tool pair) fits the keep budget and is kept verbatim.
    assert [m.role for m in second_prompt[2:]] == [Role.USER, Role.ASSISTANT, Role.TOOL]
    assert len(recorder.steps) == 2


async def test_compaction_below_threshold_records_nothing() -> None:
    reg = CollectorRegistry()
    model, _, persisted = await _run_two_steps(60, CompactionOptions(context_limit=100), reg)
    assert persisted == []
    assert series(gather(reg)["coderd_chatd_compaction_total"]) == []
    assert all(not m.is_summary for m in model.calls[1].prompt)


async def test_threshold_100_disables_compaction() -> None:
    reg = CollectorRegistry()
    _, _, persisted = await _run_two_steps(
        99, CompactionOptions(context_limit=100, threshold_percent=100), reg
    )
    assert persisted == []


async def test_compaction_error_is_reported_and_the_turn_proceeds() -> None:
    reg = CollectorRegistry()
    errors: list[BaseException] = []

    async def failing(_call: Call) -> GenerateResponse:
        raise RuntimeError("model exploded")

    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]])
    model.generate_fn = failing
    _, recorder, persisted = await _run_two_steps(
        69, CompactionOptions(context_limit=100, on_error=errors.append), reg, model
    )
    assert _compactions(reg, "error") == 1
    assert persisted == []
    assert "generate summary text: model exploded" in str(errors[0])
    assert len(recorder.steps) == 2  # the turn went on with the full history


async def test_compaction_timeout_is_labelled_timeout() -> None:
    reg = CollectorRegistry()

    async def hangs(_call: Call) -> GenerateResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]])
    model.generate_fn = hangs
    await _run_two_steps(69, CompactionOptions(context_limit=100, timeout=0.01), reg, model)
    assert _compactions(reg, "timeout") == 1


async def test_interrupt_during_compaction_records_no_sample() -> None:
    reg = CollectorRegistry()
    interrupt = Interrupt()

    async def interrupted(_call: Call) -> GenerateResponse:
        interrupt.interrupt()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]])
    model.generate_fn = interrupted
    _, recorder, _ = await _run_two_steps(
        69, CompactionOptions(context_limit=100), reg, model, interrupt
    )
    assert recorder.outcome is RunOutcome.INTERRUPTED
    assert series(gather(reg)["coderd_chatd_compaction_total"]) == []


async def test_reentry_is_bounded_when_summaries_do_not_shrink_the_prompt() -> None:
    reg = CollectorRegistry()
    bloated = " ".join(["fact"] * 75)  # every summary alone is over the threshold
    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]], summary=bloated)
    _, recorder, persisted = await _run_two_steps(
        69, CompactionOptions(context_limit=100), reg, model
    )
    assert len(persisted) == MAX_COMPACTIONS_PER_STEP
    assert _compactions(reg, "success") == MAX_COMPACTIONS_PER_STEP
    assert len(recorder.steps) == 2  # then the step proceeds
    # Re-compaction replaces the previous summary instead of stacking summaries.
    assert sum(1 for m in model.calls[1].prompt if m.is_summary) == 1


async def test_failed_compaction_that_cannot_fit_fails_with_a_clear_error() -> None:
    reg = CollectorRegistry()

    async def failing(_call: Call) -> GenerateResponse:
        return GenerateResponse(content=[TextPart("   ")])  # empty summary

    model = _model_with_usage([_tool_step(150), [*text("t", "done"), finish()]])
    model.generate_fn = failing
    with pytest.raises(StreamError) as info:
        await _run_two_steps(150, CompactionOptions(context_limit=100), reg, model)
    assert info.value.classified.kind == "config"
    assert "no longer fits" in info.value.classified.message


async def test_compaction_publishes_progress_around_persist() -> None:
    events, publish = published_recorder()
    order: list[str] = []

    async def persist_compaction(_result: CompactionResult) -> None:
        order.append("persist")

    def tracking_publish(role: object, part: object) -> None:
        if isinstance(part, ToolCallPart) and part.tool_name == "chat_summarized":
            order.append("tool_call")
        if isinstance(part, ToolResultPart) and part.tool_name == "chat_summarized":
            order.append("tool_result")
        publish(role, part)

    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]])
    await run(
        RunOptions(
            model=model,
            messages=[SYS, user("please work")],
            tools=[_echo_tool()],  # type: ignore[list-item]
            max_steps=2,
            persist_step=Recorder(),
            publish_message_part=tracking_publish,  # type: ignore[arg-type]
            compaction=CompactionOptions(
                context_limit=100, count_tokens=words, persist=persist_compaction
            ),
        )
    )
    assert order == ["tool_call", "persist", "tool_result"]
    [report] = [
        json.loads(p.output.text)
        for _, p in events
        if isinstance(p, ToolResultPart) and isinstance(p.output, ToolResultText)
        if p.tool_name == "chat_summarized"
    ]
    assert report["source"] == "automatic" and report["context_limit_tokens"] == 100


async def test_reload_messages_supplies_the_history_after_compaction() -> None:
    reloaded = [SYS, Message(Role.SYSTEM, [TextPart("stored summary")], kind="summary")]

    async def reload() -> list[Message]:
        return reloaded

    model = _model_with_usage([_tool_step(69), [*text("t", "done"), finish()]])
    await run(
        RunOptions(
            model=model,
            messages=[SYS, user("please work")],
            tools=[_echo_tool()],  # type: ignore[list-item]
            max_steps=2,
            persist_step=Recorder(),
            reload_messages=reload,
            compaction=CompactionOptions(context_limit=100, count_tokens=words),
        )
    )
    assert model.calls[1].prompt == reloaded


# --- the long chat (issue 5 acceptance) ---------------------------------------------

FACT = re.compile(r"FACT: [^.]*\.")


async def test_five_hundred_turn_chat_stays_under_the_limit_and_keeps_a_fact() -> None:
    limit = 400
    max_prompt = 0
    compactions = 0

    def stream_fn(call: Call) -> AsyncIterator[StreamPart]:
        nonlocal max_prompt
        tokens = words(call.prompt)
        assert tokens <= limit, f"prompt of {tokens} tokens sent over the {limit} limit"
        max_prompt = max(max_prompt, tokens)
        question = call.prompt[-1].content[0].text  # type: ignore[union-attr]
        if "launch code" in question:
            everything = " ".join(
                p.text for m in call.prompt for p in m.content if isinstance(p, TextPart)
            )
            found = re.search(r"launch code is (\d+)", everything)
            answer = f"The launch code is {found.group(1)}." if found else "I do not know."
        else:
            answer = "Noted, " + " ".join(["ok"] * 12) + "."
        return stream_from_parts([*text("t", answer), finish(usage=Usage(input_tokens=tokens))])

    async def generate(call: Call) -> GenerateResponse:
        # A summarizer that carries every planted fact forward, earlier summaries included.
        everything = " ".join(
            p.text for m in call.prompt[:-1] for p in m.content if isinstance(p, TextPart)
        )
        facts = sorted(set(FACT.findall(everything)))
        return GenerateResponse(
            content=[TextPart(f"Earlier turns were small talk. {' '.join(facts)}")]
        )

    model = FakeModel(stream_fn=stream_fn, generate_fn=generate)
    history: list[Message] = [SYS]

    async def persist(step: PersistedStep) -> None:
        history.extend(to_response_messages(step.content))

    async def persist_compaction(result: CompactionResult) -> None:
        nonlocal compactions
        compactions += 1
        history[:] = result.messages  # the store hides what the summary replaced

    async def reload() -> list[Message]:
        return list(history)

    options = CompactionOptions(context_limit=limit, count_tokens=words, persist=persist_compaction)
    for turn in range(1, 501):
        if turn == 3:
            message = "FACT: the launch code is 7421. Please remember it."
        elif turn == 500:
            message = "What is the launch code?"
        else:
            message = f"Turn {turn}: " + " ".join(["blah"] * 20)
        history.append(user(message))
        await run(
            RunOptions(
                model=model,
                messages=list(history),
                max_steps=3,
                persist_step=persist,
                reload_messages=reload,
                compaction=options,
            )
        )
    final = history[-1].content[0]
    assert isinstance(final, TextPart)
    assert final.text == "The launch code is 7421."
    assert compactions > 20  # the chat really went through repeated compactions
    assert max_prompt <= limit


async def test_manual_compaction_and_clear_context_as_library_calls() -> None:
    from chatd.loop.compaction import compact

    history = [SYS, user("FACT: x is 1."), assistant("ok"), user("and now?")]
    result = await compact(
        summarizer("x is 1"),
        history,
        CompactionOptions(count_tokens=words),
        context_tokens=10,
        context_limit=1000,
        source="manual",
    )
    assert result.report()["source"] == "manual"
    assert result.messages[0] == SYS and result.messages[1].is_summary
    assert result.messages[2:] == [user("and now?")]
    assert result.kept_tail_count == 1
    assert clear_context(result.messages) == [SYS]


async def test_model_reported_context_window_beats_the_configured_limit() -> None:
    reg = CollectorRegistry()
    model_limit = 1000  # the model says its window is large: 71 tokens is 7 %
    steps = [
        [
            *tool_call("c1", "echo"),
            StreamPart(
                StreamPartType.FINISH,
                finish_reason=FinishReason.TOOL_CALLS,
                usage=Usage(input_tokens=69),
                provider_metadata={"p": {"context_window": model_limit}},
            ),
        ],
        [*text("t", "done"), finish()],
    ]
    model = _model_with_usage(steps)
    _, _, persisted = await _run_two_steps(69, CompactionOptions(context_limit=100), reg, model)
    assert persisted == []
