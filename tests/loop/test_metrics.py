"""The seed: upstream `coderd/x/chatd/chatloop/metrics_test.go`, ported one-for-one.

Test names are the Go names in snake_case, table rows are parametrized cases, and
expected values are the seed's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from chatd.errors import ClassifiedError, ErrorKind
from chatd.loop import (
    Call,
    FakeModel,
    Metrics,
    NopMetrics,
    PersistedStep,
    RunOptions,
    StreamError,
    Tool,
    ToolCall,
    ToolResponse,
    estimate_prompt_size,
    run,
    stream_from_parts,
    tool_result_size,
)
from chatd.loop.metrics import (
    COMPACTION_RESULT_ERROR,
    COMPACTION_RESULT_SUCCESS,
    COMPACTION_RESULT_TIMEOUT,
    STATE_STREAMING,
    record_compaction,
    record_stream_buffer_dropped,
    record_stream_retry,
    record_tool_error,
)
from chatd.loop.retry import INITIAL_DELAY
from chatd.types import (
    FilePart,
    FinishReason,
    Message,
    ReasoningPart,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultPart,
    ToolResultText,
)
from tests.loop.promhelpers import gather, require_counter, series

AN_ERROR = "assert.AnError general error for testing"


async def _no_persist(_: PersistedStep) -> None:
    return None


def test_new_metrics_registers_all_metrics() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.chats.labels(STATE_STREAMING)
    m.compaction_total.labels("anthropic", "claude-sonnet-4-5", COMPACTION_RESULT_SUCCESS)
    m.tool_result_size_bytes.labels("anthropic", "claude-sonnet-4-5", "test")
    m.tool_errors_total.labels("anthropic", "claude-sonnet-4-5", "test")
    m.message_count.labels("anthropic", "claude-sonnet-4-5")
    m.prompt_size_bytes.labels("anthropic", "claude-sonnet-4-5")
    m.ttft_seconds.labels("anthropic", "claude-sonnet-4-5")
    m.steps_total.labels("anthropic", "claude-sonnet-4-5")
    m.stream_retries_total.labels("anthropic", "claude-sonnet-4-5", ErrorKind.TIMEOUT, "false")

    expected = {
        "coderd_chatd_chats": "gauge",
        "coderd_chatd_message_count": "histogram",
        "coderd_chatd_prompt_size_bytes": "histogram",
        "coderd_chatd_tool_result_size_bytes": "histogram",
        "coderd_chatd_ttft_seconds": "histogram",
        "coderd_chatd_compaction_total": "counter",
        "coderd_chatd_steps_total": "counter",
        "coderd_chatd_stream_retries_total": "counter",
        "coderd_chatd_stream_buffer_dropped_total": "counter",
        "coderd_chatd_tool_errors_total": "counter",
    }
    found = {name: family.type for name, family in gather(reg).items()}
    for name, expected_type in expected.items():
        assert name in found, f"metric {name!r} not registered"
        assert found[name] == expected_type, f"metric {name!r} has wrong type"


def test_nop_metrics_does_not_panic() -> None:
    m = NopMetrics()
    m.chats.labels("streaming").inc()
    m.chats.labels("streaming").dec()
    m.chats.labels("waiting").inc()
    m.chats.labels("waiting").dec()
    m.message_count.labels("anthropic", "claude-sonnet-4-5").observe(10)
    m.prompt_size_bytes.labels("openai", "gpt-5").observe(4096)
    m.tool_result_size_bytes.labels("anthropic", "claude-sonnet-4-5", "execute").observe(512)
    m.tool_errors_total.labels("anthropic", "claude-sonnet-4-5", "execute").inc()
    m.ttft_seconds.labels("anthropic", "claude-sonnet-4-5").observe(0.5)
    m.compaction_total.labels("anthropic", "claude-sonnet-4-5", "success").inc()
    m.compaction_total.labels("openai", "gpt-5", "error").inc()
    m.compaction_total.labels("google", "gemini-2.5-pro", "timeout").inc()
    m.steps_total.labels("anthropic", "claude-sonnet-4-5").inc()
    m.stream_retries_total.labels("anthropic", "claude-sonnet-4-5", "timeout", "false").inc()
    m.stream_buffer_dropped_total.inc()
    # The nil-receiver guards: every record_* helper accepts "no metrics".
    record_stream_retry(
        None, "anthropic", "claude-sonnet-4-5", ClassifiedError(kind=ErrorKind.TIMEOUT)
    )
    record_stream_buffer_dropped(None)
    record_tool_error(None, "anthropic", "claude-sonnet-4-5", "test")
    # And the no-op instance really is functional: it counted what was recorded.
    assert m.stream_buffer_dropped_total._value.get() == 1


def test_estimate_prompt_size() -> None:
    messages = [
        Message(Role.SYSTEM, [TextPart("You are a helpful assistant.")]),
        Message(
            Role.USER,
            [TextPart("Hello world"), ReasoningPart("thinking..."), FilePart(b"filedata")],
        ),
        Message(
            Role.ASSISTANT,
            [TextPart("Hi there!"), ToolCallPart(tool_call_id="", input='{"file":"main.go"}')],
        ),
        Message(Role.TOOL, [ToolResultPart(tool_call_id="", output=ToolResultText("result"))]),
    ]
    # "You are a helpful assistant." (28) + "Hello world" (11) + "thinking..." (11) +
    # "filedata" (8) + "Hi there!" (9) + '{"file":"main.go"}' (18) + "result" (6) = 91
    assert estimate_prompt_size(messages) == 91


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(ToolResultPart("c", output=ToolResultText("hello")), 5, id="text"),
        pytest.param(
            ToolResultPart("c", output=ToolResultError(AN_ERROR)), len(AN_ERROR), id="error"
        ),
        # The caption is not sent as media bytes, so it does not count.
        pytest.param(
            ToolResultPart("c", output=ToolResultMedia("base64data", text="a caption")),
            10,
            id="media",
        ),
        pytest.param(ToolResultPart("c"), 0, id="nil_result"),
        pytest.param(ToolResultPart("c", output=ToolResultError(None)), 0, id="error_nil_error"),
    ],
)
def test_tool_result_size(result: ToolResultPart, expected: int) -> None:
    assert tool_result_size(result) == expected


def test_record_compaction_nil_metrics_does_not_panic() -> None:
    record_compaction(None, "anthropic", "claude-sonnet-4-5", True, None)


@pytest.mark.parametrize(
    ("compacted", "err", "want_label", "want_count"),
    [
        pytest.param(True, None, COMPACTION_RESULT_SUCCESS, 1, id="success"),
        pytest.param(False, RuntimeError(AN_ERROR), COMPACTION_RESULT_ERROR, 1, id="error"),
        pytest.param(False, TimeoutError(), COMPACTION_RESULT_TIMEOUT, 1, id="timeout"),
        pytest.param(False, None, "", 0, id="threshold_not_reached"),
        pytest.param(False, asyncio.CancelledError(), "", 0, id="canceled"),
    ],
)
def test_record_compaction(
    compacted: bool, err: BaseException | None, want_label: str, want_count: int
) -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.record_compaction("test-provider", "test-model", compacted, err)
    if want_count == 0:
        family = gather(reg)["coderd_chatd_compaction_total"]
        assert series(family) == [], "compaction_total should not be recorded"
        return
    require_counter(
        reg,
        "coderd_chatd_compaction_total",
        want_count,
        {"provider": "test-provider", "model": "test-model", "result": want_label},
    )


@pytest.mark.parametrize(
    ("kind", "chain_broken"),
    [
        pytest.param(ErrorKind.OVERLOADED, False, id="overloaded"),
        pytest.param(ErrorKind.RATE_LIMIT, False, id="rate_limit"),
        pytest.param(ErrorKind.TIMEOUT, False, id="timeout"),
        pytest.param(ErrorKind.STARTUP_TIMEOUT, False, id="startup_timeout"),
        pytest.param(ErrorKind.AUTH, False, id="auth"),
        pytest.param(ErrorKind.CONFIG, False, id="config"),
        pytest.param(ErrorKind.MISSING_KEY, False, id="missing_key"),
        pytest.param(ErrorKind.GENERIC, False, id="generic"),
        pytest.param(ErrorKind.GENERIC, True, id="chain_broken"),
    ],
)
def test_record_stream_retry(kind: ErrorKind, chain_broken: bool) -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.record_stream_retry(
        "test-provider", "test-model", ClassifiedError(kind=kind, chain_broken=chain_broken)
    )
    require_counter(
        reg,
        "coderd_chatd_stream_retries_total",
        1,
        {
            "provider": "test-provider",
            "model": "test-model",
            "kind": str(kind),
            "chain_broken": "true" if chain_broken else "false",
        },
    )


def test_record_stream_buffer_dropped_nil_metrics_does_not_panic() -> None:
    record_stream_buffer_dropped(None)


def test_record_stream_buffer_dropped_increments_monotonically() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.record_stream_buffer_dropped()
    m.record_stream_buffer_dropped()
    m.record_stream_buffer_dropped()
    family = gather(reg).get("coderd_chatd_stream_buffer_dropped_total")
    assert family is not None, "stream_buffer_dropped_total metric not found"
    samples = series(family)
    assert len(samples) == 1
    assert samples[0].value == 3
    assert samples[0].labels == {}, "stream_buffer_dropped_total must be an unlabeled counter"


def test_record_tool_error_nil_metrics_does_not_panic() -> None:
    record_tool_error(None, "anthropic", "claude-sonnet-4-5", "test")


def test_record_tool_error_increments_with_correct_labels() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.record_tool_error("test-provider", "test-model", "read_file")
    require_counter(
        reg,
        "coderd_chatd_tool_errors_total",
        1,
        {"provider": "test-provider", "model": "test-model", "tool_name": "read_file"},
    )


def _fake(parts_fn: object) -> FakeModel:
    return FakeModel(
        stream_fn=parts_fn,  # type: ignore[arg-type]
        provider_name="test-provider",
        model_name="test-model",
    )


def test_record_tool_error_labels_a_nameless_tool_unknown() -> None:
    reg = CollectorRegistry()
    Metrics(reg).record_tool_error("test-provider", "test-model", "")
    require_counter(reg, "coderd_chatd_tool_errors_total", 1, {"tool_name": "unknown"})


async def test_run_records_metrics() -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    parts = [
        StreamPart(StreamPartType.TEXT_START, id="t1"),
        StreamPart(StreamPartType.TEXT_DELTA, id="t1", delta="hello"),
        StreamPart(StreamPartType.TEXT_END, id="t1"),
        StreamPart(StreamPartType.FINISH, finish_reason=FinishReason.STOP),
    ]
    model = _fake(lambda _call: stream_from_parts(parts))
    await run(
        RunOptions(
            model=model,
            messages=[Message(Role.USER, [TextPart("hello")])],
            max_steps=1,
            persist_step=_no_persist,
            metrics=metrics,
        )
    )
    families = gather(reg)
    for name in (
        "coderd_chatd_steps_total",
        "coderd_chatd_message_count",
        "coderd_chatd_prompt_size_bytes",
        "coderd_chatd_ttft_seconds",
    ):
        assert name in families, f"{name} not recorded"
        samples = series(families[name])
        assert len(samples) == 1, name
        assert samples[0].value == 1, f"{name} should have exactly one observation"
        assert samples[0].labels["provider"] == "test-provider"
        assert samples[0].labels["model"] == "test-model"


async def test_run_stream_retry_records_metric() -> None:
    """One real retry: this test pays INITIAL_DELAY (1 s) of wall time, like the seed's."""
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    retries: list[tuple[int, ClassifiedError]] = []
    calls = 0

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("received status 429 from upstream")
        return stream_from_parts(
            [StreamPart(StreamPartType.FINISH, finish_reason=FinishReason.STOP)]
        )

    await run(
        RunOptions(
            model=_fake(stream_fn),
            max_steps=1,
            context_limit_fallback=4096,
            persist_step=_no_persist,
            metrics=metrics,
            on_retry=lambda attempt, _err, classified, delay: retries.append((attempt, classified)),
        )
    )
    assert len(retries) == 1
    assert retries[0][0] == 1
    assert retries[0][1].kind == ErrorKind.RATE_LIMIT
    assert retries[0][1].provider == "test-provider"
    assert calls == 2
    require_counter(
        reg,
        "coderd_chatd_stream_retries_total",
        1,
        {
            "provider": "test-provider",
            "model": "test-model",
            "kind": "rate_limit",
            "chain_broken": "false",
        },
    )
    assert INITIAL_DELAY == 1.0


async def test_run_stream_retry_canceled_does_not_increment() -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg)

    async def stream_fn(_call: Call) -> AsyncIterator[StreamPart]:
        raise asyncio.CancelledError

    with pytest.raises((StreamError, asyncio.CancelledError)):
        await run(
            RunOptions(
                model=_fake(stream_fn),
                max_steps=1,
                context_limit_fallback=4096,
                persist_step=_no_persist,
                metrics=metrics,
            )
        )
    family = gather(reg)["coderd_chatd_stream_retries_total"]
    assert series(family) == [], "stream_retries_total should have no samples after a cancel"


async def _tool_error_is_error(_call: ToolCall) -> ToolResponse:
    return ToolResponse(content="something went wrong", is_error=True)


async def _tool_raises(_call: ToolCall) -> ToolResponse:
    raise ConnectionRefusedError("connection refused")


@pytest.mark.parametrize(
    ("tool_fn", "builtin_tool_names", "want_label"),
    [
        pytest.param(_tool_error_is_error, {"failing_tool"}, "failing_tool", id="builtin_is_error"),
        pytest.param(_tool_error_is_error, set(), "failing_tool", id="mcp_tool_is_error"),
        pytest.param(_tool_raises, {"failing_tool"}, "failing_tool", id="tool_run_raises"),
    ],
)
async def test_run_tool_error_records_metric(
    tool_fn: object, builtin_tool_names: set[str], want_label: str
) -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    failing_tool = Tool("failing_tool", "a tool that always fails", tool_fn)  # type: ignore[arg-type]
    parts = [
        StreamPart(StreamPartType.TOOL_INPUT_START, id="tc1", tool_call_name="failing_tool"),
        StreamPart(StreamPartType.TOOL_INPUT_DELTA, id="tc1", delta="{}"),
        StreamPart(StreamPartType.TOOL_INPUT_END, id="tc1"),
        StreamPart(
            StreamPartType.TOOL_CALL, id="tc1", tool_call_name="failing_tool", tool_call_input="{}"
        ),
        StreamPart(StreamPartType.FINISH, finish_reason=FinishReason.TOOL_CALLS),
    ]
    persisted: list[PersistedStep] = []

    async def persist(step: PersistedStep) -> None:
        persisted.append(step)

    await run(
        RunOptions(
            model=_fake(lambda _call: stream_from_parts(parts)),
            max_steps=1,
            tools=[failing_tool],
            active_tools=["failing_tool"],
            builtin_tool_names=builtin_tool_names,
            persist_step=persist,
            metrics=metrics,
        )
    )
    require_counter(
        reg,
        "coderd_chatd_tool_errors_total",
        1,
        {"provider": "test-provider", "model": "test-model", "tool_name": want_label},
    )
    # The failure reached the model as an error result; the run itself succeeded.
    results = [p for p in persisted[0].content if isinstance(p, ToolResultPart)]
    assert len(results) == 1 and results[0].is_error
