"""Loop overhead: µs per stream part and per tool step, against a bare async-generator floor.

Workloads (DESIGN.md targets: <= 5 µs/part — <= 1.8 µs stretch — and <= 200 µs/step):
- parts: a FakeModel streams 10,000 text deltas in one step; the loop assembles and
  publishes them (publish callback is a no-op append).
- steps: a 50-step run, one tool call per step, persist callback a no-op.
- floor: iterating the same 10,000 pre-built parts with a bare `async for`.
- history: the 50-step tool run again, starting from a 10-message and a 1,000-message
  history with compaction enabled (never triggered); per-step cost must stay flat
  (prompt building, prompt-size metric and token accounting read only what is new).

Run: `make bench` (or `.venv/bin/python -m benchmarks.loop_overhead`).
"""

from __future__ import annotations

import os
import platform

from benchmarks._timing import median_seconds
from chatd.loop import (
    FakeModel,
    PersistedStep,
    RunOptions,
    Tool,
    ToolCall,
    ToolResponse,
    run,
    stream_from_parts,
)
from chatd.loop.compaction import CompactionOptions
from chatd.types import (
    FinishReason,
    Message,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
)

PARTS = 10_000
STEPS = 50
P = StreamPartType

TEXT_STREAM = [
    StreamPart(P.TEXT_START, id="t"),
    *(StreamPart(P.TEXT_DELTA, id="t", delta="tok ") for _ in range(PARTS)),
    StreamPart(P.TEXT_END, id="t"),
    StreamPart(P.FINISH, finish_reason=FinishReason.STOP),
]
TOOL_STEP = [
    StreamPart(P.TOOL_INPUT_START, id="c", tool_call_name="echo"),
    StreamPart(P.TOOL_INPUT_DELTA, id="c", delta='{"x":1}'),
    StreamPart(P.TOOL_INPUT_END, id="c"),
    StreamPart(P.TOOL_CALL, id="c", tool_call_name="echo", tool_call_input='{"x":1}'),
    StreamPart(P.FINISH, finish_reason=FinishReason.TOOL_CALLS),
]
USER = [Message(Role.USER, [TextPart("go")])]


async def _persist(_step: PersistedStep) -> None:
    return None


async def _echo(call: ToolCall) -> ToolResponse:
    return ToolResponse.text(call.input)


async def floor() -> None:
    count = 0
    async for _part in stream_from_parts(TEXT_STREAM):
        count += 1


async def parts_run() -> None:
    published: list[object] = []

    def publish(_role: Role, part: object) -> None:
        published.append(part)

    await run(
        RunOptions(
            model=FakeModel(stream_fn=lambda _c: stream_from_parts(TEXT_STREAM)),
            messages=USER,
            persist_step=_persist,
            publish_message_part=publish,
        )
    )
    assert len(published) == PARTS


async def steps_run(
    history: list[Message] = USER, compaction: CompactionOptions | None = None
) -> None:
    steps = 0

    async def persist(_step: PersistedStep) -> None:
        nonlocal steps
        steps += 1

    await run(
        RunOptions(
            model=FakeModel(stream_fn=lambda _c: stream_from_parts(TOOL_STEP)),
            messages=history,
            tools=[Tool("echo", "echo", _echo)],
            max_steps=STEPS,
            persist_step=persist,
            compaction=compaction,
        )
    )
    assert steps == STEPS


def _history(n: int) -> list[Message]:
    pairs = [
        Message(Role.USER if i % 2 == 0 else Role.ASSISTANT, [TextPart(f"message {i} " * 8)])
        for i in range(n - 1)
    ]
    return [*pairs, *USER]


def main() -> None:
    floor_us = median_seconds(floor) / len(TEXT_STREAM) * 1e6
    part_us = median_seconds(parts_run) / len(TEXT_STREAM) * 1e6
    step_us = median_seconds(steps_run, repeats=7) / STEPS * 1e6
    print(
        f"machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cpus, {platform.machine()}"
    )
    print(f"floor (bare async generator): {floor_us:8.3f} µs/part")
    print(
        f"chatd loop, text deltas:      {part_us:8.3f} µs/part   "
        f"(net {part_us - floor_us:.3f} µs over floor, {part_us / floor_us:.1f}x floor; "
        f"target <= 5 µs)"
    )
    print(f"chatd loop, tool steps:       {step_us:8.1f} µs/step   (target <= 200 µs)")
    compaction = CompactionOptions(context_limit=10_000_000)
    short, long = _history(10), _history(1000)
    short_us = median_seconds(lambda: steps_run(short, compaction), repeats=7) / STEPS * 1e6
    long_us = median_seconds(lambda: steps_run(long, compaction), repeats=7) / STEPS * 1e6
    print(f"history 10 msgs, compaction:  {short_us:8.1f} µs/step")
    print(
        f"history 1000 msgs, compaction:{long_us:8.1f} µs/step   "
        f"(ratio {long_us / short_us:.2f}x; flat means ~1x)"
    )


if __name__ == "__main__":
    main()
