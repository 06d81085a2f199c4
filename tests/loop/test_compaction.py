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
    MAX_COMPACTION_REENTRIES,
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


# --- upstream TestRun_Compaction (chatloop compaction_test.go), one for one ------------
#
# Upstream checks compaction after every persisted step on the usage that step
# reported, once more after the run when no step compacted, and re-enters the
# step loop when the model stopped on a step whose history was then compacted.
# The limit comes from `context_limit_fallback` as upstream's ContextLimitFallback.

HELLO = [user("hello")]
TOOL_CALLS = FinishReason.TOOL_CALLS
COMPACTED = [Message(Role.SYSTEM, [TextPart("compacted system")]), user("compacted user")]


def _text_step(tokens: int, body: str = "done") -> list[StreamPart]:
    return [*text("t", body), finish(usage=Usage(input_tokens=tokens, total_tokens=tokens + 5))]


def _read_file_step(tokens: int) -> list[StreamPart]:
    usage = Usage(input_tokens=tokens, total_tokens=tokens + 5)
    return [*tool_call("tc-1", "read_file"), finish(FinishReason.TOOL_CALLS, usage)]


class _Upstream:
    """One upstream-style run: counts compactions and reloads, records what was published."""

    def __init__(self, *steps: Sequence[StreamPart], reloaded: Sequence[Message] = HELLO) -> None:
        self.model = _model_with_usage(steps, summary="summary text for compaction")
        self.reloaded = list(reloaded)
        self.compactions: list[CompactionResult] = []
        self.reloads = 0
        self.errors: list[BaseException] = []
        self.order: list[str] = []
        self.recorder = Recorder()

    def fail_summaries(self) -> list[int]:
        """Make every summary fail; the returned list holds how many were asked for."""
        attempts = [0]

        async def failing(_call: Call) -> GenerateResponse:
            attempts[0] += 1
            raise RuntimeError("generate failed")

        self.model.generate_fn = failing
        return attempts

    async def _persist_compaction(self, result: CompactionResult) -> None:
        self.order.append("persist")
        self.compactions.append(result)

    async def _reload(self) -> list[Message]:
        self.reloads += 1
        return list(self.reloaded)

    def _publish(self, _role: object, part: object) -> None:
        if isinstance(part, ToolCallPart | ToolResultPart) and part.tool_name == "chat_summarized":
            kind = "call" if isinstance(part, ToolCallPart) else "result"
            self.order.append(f"publish_tool_{kind}")
            self.published.append(part)

    async def run(self, max_steps: int = 1, **options: object) -> RunOutcome:
        self.published: list[ToolCallPart | ToolResultPart] = []
        generate = self.model.generate_fn

        async def tracked(call: Call) -> GenerateResponse:
            self.order.append("generate")
            assert generate is not None
            return await generate(call)

        self.model.generate_fn = tracked
        return await run(
            RunOptions(
                model=self.model,
                messages=list(HELLO),
                tools=[_echo_tool(), _echo_tool_named("read_file")],  # type: ignore[list-item]
                max_steps=max_steps,
                persist_step=self.recorder,
                publish_message_part=self._publish,
                context_limit_fallback=100,
                reload_messages=self._reload,
                compaction=CompactionOptions(
                    threshold_percent=70,
                    summary_prompt="summarize now",
                    persist=self._persist_compaction,
                    on_error=self.errors.append,
                ),
                **options,  # type: ignore[arg-type]
            )
        )


def _echo_tool_named(name: str) -> object:
    from chatd.loop import Tool

    return Tool(name, "", _echo)  # type: ignore[arg-type]


async def test_upstream_persists_when_threshold_reached() -> None:
    # PersistsWhenThresholdReached: the only step (80 of 100) compacts after it; the
    # re-entry finds no step left, and the check after the run compacts once more on
    # that step's usage, as upstream does.
    up = _Upstream(_text_step(80))
    assert await up.run(max_steps=1) is RunOutcome.FINISHED
    assert len(up.compactions) == 2
    result = up.compactions[-1]
    assert "summary text for compaction" in result.system_summary
    assert result.summary_report == "summary text for compaction"
    assert (result.context_tokens, result.context_limit) == (80, 100)
    assert result.usage_percent == pytest.approx(80.0)
    assert len(up.model.calls) == 1 and len(up.recorder.steps) == 1


async def test_upstream_summary_request_ends_with_the_summary_prompt() -> None:
    # PersistsWhenThresholdReached's GenerateFn: the summary call's last message is
    # the user's summary prompt, and no tools may be called.
    prompts: list[Call] = []
    up = _Upstream(_text_step(80))
    summarize = up.model.generate_fn
    assert summarize is not None

    async def recording(call: Call) -> GenerateResponse:
        prompts.append(call)
        return await summarize(call)

    up.model.generate_fn = recording
    await up.run(max_steps=1)
    last = prompts[0].prompt[-1]
    assert last.role == Role.USER and last.content == [TextPart("summarize now")]
    assert prompts[0].tool_choice == "none"


async def test_upstream_publishes_parts_before_and_after_persist() -> None:
    # PublishesPartsBeforeAndAfterPersist: each compaction publishes its tool call,
    # summarises, persists, then publishes its result.
    up = _Upstream(_text_step(80))
    await up.run(max_steps=1)
    assert up.order == ["publish_tool_call", "generate", "persist", "publish_tool_result"] * 2


async def test_upstream_publish_not_called_below_threshold() -> None:
    # PublishNotCalledBelowThreshold.
    up = _Upstream([finish(usage=Usage(input_tokens=10))])
    await up.run(max_steps=1)
    assert up.published == [] and up.compactions == []


async def test_upstream_mid_loop_compaction_reloads_messages() -> None:
    # MidLoopCompactionReloadsMessages: the tool step (80 of 100) compacts after it;
    # the next step is sent the reloaded history.
    up = _Upstream(_read_file_step(80), _text_step(30), reloaded=COMPACTED)
    assert await up.run(max_steps=5) is RunOutcome.FINISHED
    assert len(up.compactions) == 1 and up.reloads == 1
    assert len(up.model.calls) == 2
    assert up.model.calls[1].prompt == COMPACTED


async def test_upstream_post_run_compaction_skipped_after_mid_loop() -> None:
    # PostRunCompactionSkippedAfterMidLoop: a pass that compacted after a step is not
    # checked again after the run.
    up = _Upstream(_read_file_step(80), _text_step(20), reloaded=COMPACTED)
    await up.run(max_steps=5)
    assert len(up.compactions) == 1


async def test_upstream_errors_are_reported() -> None:
    # ErrorsAreReported: a step that persists nothing is checked after the run; the
    # failed summary reaches on_error and is published as the compaction's error result.
    up = _Upstream([finish(usage=Usage(input_tokens=80))])
    up.fail_summaries()
    assert await up.run(max_steps=1) is RunOutcome.FINISHED
    [error] = up.errors
    assert "generate summary text" in str(error)
    call, result = up.published
    assert isinstance(call, ToolCallPart) and isinstance(result, ToolResultPart)
    assert result.is_error and result.tool_call_id == call.tool_call_id
    assert up.compactions == []


async def test_upstream_post_run_compaction_re_enters_step_loop() -> None:
    # PostRunCompactionReEntersStepLoop: the model stopped on a step the history was
    # compacted after, so it gets another step on the summary.
    up = _Upstream(
        _text_step(80, "initial response"),
        _text_step(20, "continued after compaction"),
        reloaded=COMPACTED,
    )
    assert await up.run(max_steps=5) is RunOutcome.FINISHED
    assert len(up.compactions) == 1 and up.reloads == 1
    assert len(up.model.calls) == 2
    assert [s.content[0] for s in up.recorder.steps] == [
        TextPart("initial response"),
        TextPart("continued after compaction"),
    ]


async def test_upstream_post_run_compaction_re_entry_includes_user_summary() -> None:
    # PostRunCompactionReEntryIncludesUserSummary: the re-entry is sent the reloaded
    # history, summary included (a user message in upstream's store).
    stored = [
        Message(Role.SYSTEM, [TextPart("system prompt")]),
        user("Summary of earlier chat context:\n\ncompacted summary"),
    ]
    up = _Upstream(_text_step(80, "initial response"), _text_step(20, "continued"), reloaded=stored)
    await up.run(max_steps=5)
    assert len(up.model.calls) == 2
    assert up.model.calls[1].prompt == stored


async def test_upstream_triggers_on_dynamic_tool_exit() -> None:
    # TriggersOnDynamicToolExit: the run hands a client tool over above the
    # threshold, and compacts before it returns.
    usage = Usage(input_tokens=80, total_tokens=85)
    up = _Upstream(
        [*tool_call("tc-1", "my_dynamic_tool", '{"query": "test"}'), finish(TOOL_CALLS, usage)]
    )
    outcome = await up.run(max_steps=5, dynamic_tool_names={"my_dynamic_tool"})
    assert outcome is RunOutcome.REQUIRES_ACTION
    assert len(up.compactions) == 1
    assert "summary text for compaction" in up.compactions[0].system_summary
    [step] = up.recorder.steps
    assert [c.tool_name for c in step.pending_dynamic_tool_calls] == ["my_dynamic_tool"]


# --- beyond upstream's subtests: the same rules at their edges --------------------------


async def test_re_entry_is_bounded_at_three() -> None:
    # A model that ends every step above the threshold: one first pass and
    # MAX_COMPACTION_REENTRIES re-entries, each compacting after its only step.
    up = _Upstream(_text_step(80))
    assert await up.run(max_steps=10) is RunOutcome.FINISHED
    assert MAX_COMPACTION_REENTRIES == 3
    assert len(up.model.calls) == 1 + MAX_COMPACTION_REENTRIES
    assert len(up.compactions) == 1 + MAX_COMPACTION_REENTRIES


async def test_re_entries_count_against_max_steps() -> None:
    up = _Upstream(_text_step(80))
    assert await up.run(max_steps=2) is RunOutcome.FINISHED
    assert len(up.model.calls) == 2


async def test_compacts_before_a_stop_after_tool_ends_the_run() -> None:
    usage = Usage(input_tokens=80)
    up = _Upstream([*tool_call("tc-1", "echo"), finish(TOOL_CALLS, usage)])
    outcome = await up.run(max_steps=5, stop_after_tools={"echo"})
    assert outcome is RunOutcome.STOP_AFTER_TOOL
    assert len(up.compactions) == 1 and len(up.model.calls) == 1


async def test_a_failed_compaction_after_a_step_is_not_retried_before_the_next() -> None:
    # Upstream tries once per step: the check before the next step (chatd's) does not
    # summarise again a history that has just failed to compact.
    up = _Upstream(_read_file_step(80), _text_step(20))
    attempts = up.fail_summaries()
    assert await up.run(max_steps=5) is RunOutcome.FINISHED
    assert attempts == [1] and len(up.errors) == 1
    assert len(up.model.calls) == 2


async def test_a_failed_compaction_after_the_last_step_is_not_tried_again_after_it() -> None:
    # Upstream would summarise twice here (after the step, then after the run): the
    # check after the run only looks at what no check after a step has seen.
    up = _Upstream(_text_step(80))
    attempts = up.fail_summaries()
    assert await up.run(max_steps=5) is RunOutcome.FINISHED
    assert attempts == [1] and len(up.errors) == 1


async def test_interrupt_during_compaction_after_a_step_persists_nothing_more() -> None:
    interrupt = Interrupt()
    up = _Upstream(_read_file_step(80), _text_step(20))

    async def interrupted(_call: Call) -> GenerateResponse:
        interrupt.interrupt()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    up.model.generate_fn = interrupted
    assert await up.run(max_steps=5, interrupt=interrupt) is RunOutcome.INTERRUPTED
    [step] = up.recorder.steps  # the step itself, persisted once, before the compaction
    assert len(step.content) == 2 and up.compactions == [] and up.errors == []
