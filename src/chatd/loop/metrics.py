"""Prometheus metrics of the agent loop: the ten `coderd_chatd_*` families of the seed,
and chatd's `cost_micros_total`.

Families, types, label names and buckets match upstream `chatloop/metrics.go` so
dashboards built for Coder work unchanged. The loop records per step, per retry and
per tool result; the service records `chats`, `stream_buffer_dropped_total` and
`cost_micros_total`.
Every `record_*` helper accepts `None` and then does nothing, so code paths without
metrics need no branches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatd.errors import ClassifiedError
from chatd.types import (
    FilePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultError,
    ToolResultMedia,
    ToolResultOutput,
    ToolResultPart,
    ToolResultText,
)

__all__ = [
    "COMPACTION_RESULT_ERROR",
    "COMPACTION_RESULT_SUCCESS",
    "COMPACTION_RESULT_TIMEOUT",
    "STATE_STREAMING",
    "STATE_WAITING",
    "Metrics",
    "NopMetrics",
    "estimate_prompt_size",
    "record_compaction",
    "record_stream_buffer_dropped",
    "record_stream_retry",
    "record_tool_error",
    "tool_result_size",
]

STATE_STREAMING = "streaming"
STATE_WAITING = "waiting"
COMPACTION_RESULT_SUCCESS = "success"
COMPACTION_RESULT_ERROR = "error"
COMPACTION_RESULT_TIMEOUT = "timeout"

_PM = ("provider", "model")
# Buckets from upstream: message counts 1…1024, prompt sizes 1 KiB…256 MiB,
# tool results 64 B…4 MiB, time to first token 50 ms…60 s.
_MESSAGE_COUNT_BUCKETS = tuple(float(2**k) for k in range(11))
_PROMPT_SIZE_BUCKETS = tuple(float(1024 * 4**k) for k in range(10))
_TOOL_RESULT_BUCKETS = tuple(float(64 * 4**k) for k in range(9))
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The loop's metric families, registered on `registry` under `<namespace>_<subsystem>_`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str = "coderd",
        subsystem: str = "chatd",
    ) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(
                name, doc, labels, namespace=namespace, subsystem=subsystem, registry=registry
            )

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(
                name,
                doc,
                labels,
                namespace=namespace,
                subsystem=subsystem,
                registry=registry,
                buckets=buckets,
            )

        self.chats = Gauge(
            "chats",
            "Chats held by this replica, by state.",
            ["state"],
            namespace=namespace,
            subsystem=subsystem,
            registry=registry,
        )

        # chatd's own: the deployment's capacity (CHATD_MAX_RUNNING_CHATS/_AGENTS) as
        # this replica's last claim saw it, by kind ("chat": top-level, "agent": child).
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(
                name, doc, ["kind"], namespace=namespace, subsystem=subsystem, registry=registry
            )

        self.capacity_running = gauge(
            "capacity_running", "Chats running in the deployment, by kind, at the last claim."
        )
        self.capacity_queued = gauge(
            "capacity_queued", "Chats waiting pending to run, by kind, at the last claim."
        )
        self.capacity_limit = gauge(
            "capacity_limit", "The deployment's limit on running chats, by kind (0: none)."
        )
        self.capacity_wait_seconds = histogram(
            "capacity_wait_seconds",
            "Seconds a chat waited pending before a replica claimed it, by kind.",
            ("kind",),
            _WAIT_BUCKETS,
        )
        self.message_count = histogram(
            "message_count",
            "Messages in the prompt sent for one step.",
            _PM,
            _MESSAGE_COUNT_BUCKETS,
        )
        self.prompt_size_bytes = histogram(
            "prompt_size_bytes",
            "Estimated prompt size in bytes for one step.",
            _PM,
            _PROMPT_SIZE_BUCKETS,
        )
        self.tool_result_size_bytes = histogram(
            "tool_result_size_bytes",
            "Size in bytes of each tool result fed back to the model.",
            (*_PM, "tool_name"),
            _TOOL_RESULT_BUCKETS,
        )
        self.ttft_seconds = histogram(
            "ttft_seconds",
            "Seconds from opening a model stream to its first part.",
            _PM,
            _TTFT_BUCKETS,
        )
        self.compaction_total = counter(
            "compaction_total", "Context compactions attempted, by result.", (*_PM, "result")
        )
        self.steps_total = counter("steps_total", "Agent loop steps started.", _PM)
        self.stream_retries_total = counter(
            "stream_retries_total",
            "Model stream attempts retried, by error kind.",
            (*_PM, "kind", "chain_broken"),
        )
        self.stream_buffer_dropped_total = counter(
            "stream_buffer_dropped_total",
            "Stream events dropped because a chat's buffer was full.",
        )
        self.tool_errors_total = counter(
            "tool_errors_total", "Tool calls whose result was an error.", (*_PM, "tool_name")
        )
        # chatd's own (upstream has none): the service records it per committed step.
        self.cost_micros_total = counter(
            "cost_micros_total",
            "Cost of committed steps in micro-USD, at their model config's prices.",
            _PM,
        )

    def record_compaction(
        self, provider: str, model: str, compacted: bool, err: BaseException | None
    ) -> None:
        result = _compaction_result(compacted, err)
        if result:
            self.compaction_total.labels(provider, model, result).inc()

    def record_stream_retry(self, provider: str, model: str, classified: ClassifiedError) -> None:
        chain_broken = "true" if classified.chain_broken else "false"
        self.stream_retries_total.labels(provider, model, classified.kind, chain_broken).inc()

    def record_stream_buffer_dropped(self) -> None:
        self.stream_buffer_dropped_total.inc()

    def record_tool_error(self, provider: str, model: str, tool_name: str) -> None:
        self.tool_errors_total.labels(provider, model, tool_name or "unknown").inc()

    def record_cost(self, provider: str, model: str, micros: int) -> None:
        self.cost_micros_total.labels(provider, model).inc(micros)


class NopMetrics(Metrics):
    """A fully working `Metrics` bound to a private registry nobody scrapes."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry(auto_describe=False))


def _compaction_result(compacted: bool, err: BaseException | None) -> str:
    if err is not None:
        if isinstance(err, asyncio.CancelledError):
            return ""  # the user interrupted; not a compaction failure
        if isinstance(err, TimeoutError):
            return COMPACTION_RESULT_TIMEOUT
        return COMPACTION_RESULT_ERROR
    return COMPACTION_RESULT_SUCCESS if compacted else ""


def record_compaction(
    m: Metrics | None, provider: str, model: str, compacted: bool, err: BaseException | None
) -> None:
    if m is not None:
        m.record_compaction(provider, model, compacted, err)


def record_stream_retry(
    m: Metrics | None, provider: str, model: str, classified: ClassifiedError
) -> None:
    if m is not None:
        m.record_stream_retry(provider, model, classified)


def record_stream_buffer_dropped(m: Metrics | None) -> None:
    if m is not None:
        m.record_stream_buffer_dropped()


def record_tool_error(m: Metrics | None, provider: str, model: str, tool_name: str) -> None:
    if m is not None:
        m.record_tool_error(provider, model, tool_name)


def _byte_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _output_size(output: ToolResultOutput | None) -> int:
    if isinstance(output, ToolResultText):
        return _byte_len(output.text)
    if isinstance(output, ToolResultError):
        return _byte_len(output.error or "")
    if isinstance(output, ToolResultMedia):
        return _byte_len(output.data)  # the base64 text; the caption is not counted
    return 0


def tool_result_size(result: ToolResultPart) -> int:
    """Bytes of a tool result's output as the model will see it."""
    return _output_size(result.output)


def estimate_prompt_size(messages: Iterable[Message]) -> int:
    """Bytes of text, file data, tool input and tool output across a prompt (UTF-8)."""
    size = 0
    for message in messages:
        for part in message.content:
            if isinstance(part, TextPart | ReasoningPart):
                size += _byte_len(part.text)
            elif isinstance(part, FilePart):
                size += len(part.data)
            elif isinstance(part, ToolCallPart):
                size += _byte_len(part.input)
            elif isinstance(part, ToolResultPart):
                size += _output_size(part.output)
    return size
