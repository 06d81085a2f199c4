"""chatd's loop against the peers a user would pick instead, on one fake workload, in one run.

The workload (`benchmarks/_workload.py`, DESIGN.md "Targets"): one step streaming 2,000 text
deltas, and a run of 20 steps with one tool call each. The same workload is run by:
- chatd: `chatd.loop.run()` with a `FakeModel`; deltas reach a `publish_message_part`
  callback, tool results are read from the `persist_step` callback;
- pydantic-ai (`benchmarks/_pydantic_ai.py`): `FunctionModel` streaming, `run_stream_events()`;
- openai-agents (`benchmarks/_openai_agents.py`): a custom `Model` streaming Responses-API
  events, `Runner.run_streamed()` consumed through `stream_events()`;
- floor: a bare `async for` over an async generator of the same parts, with the tool called
  inline: what no framework can go below.
- floor+publish (text only, shown for reference, no target): the floor plus what the
  workload asks of every framework per delta and the floor skips: build the part a live
  consumer receives, hand it to the same callback chatd's consumer uses, and assemble the
  final text apart from what the consumer kept.

Every fake stream is built once, outside the timed region, so each framework pays for its own
work and not for building its fake provider's objects. Every run is checked (same final text,
same deltas seen live, same tool results in order): a fast wrong run fails the benchmark.

Figures are medians over interleaved rounds (each round runs every framework on every
workload), so noise from other processes on the machine spreads over all of them alike.

Run: `make bench` (or `.venv-bench/bin/python -m benchmarks.peers [--rounds N]`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from agents import set_tracing_disabled

from benchmarks._openai_agents import openai_agents_run
from benchmarks._pydantic_ai import pydantic_ai_run
from benchmarks._workload import (
    CALL_IDS,
    DELTAS,
    PROMPT,
    SHORT_DELTAS,
    TEXTS,
    TOOL_ARGS,
    TOOL_STEPS,
    WORKLOADS,
    Outcome,
    check,
    closing_answer,
)
from chatd.loop import (
    Call,
    FakeModel,
    PersistedStep,
    RunOptions,
    Tool,
    ToolCall,
    ToolResponse,
    run,
    stream_from_parts,
)
from chatd.types import (
    FinishReason,
    Message,
    MessagePart,
    Role,
    StreamPart,
    StreamPartType,
    TextPart,
    ToolResultPart,
    ToolResultText,
)

ROUNDS = 11


# --- chatd -----------------------------------------------------------------------------

P = StreamPartType
_TEXT_DELTA = P.TEXT_DELTA
_TOOL_CALL = P.TOOL_CALL


def chatd_text(deltas: list[str]) -> list[StreamPart]:
    return [
        StreamPart(P.TEXT_START, id="t"),
        *(StreamPart(P.TEXT_DELTA, id="t", delta=d) for d in deltas),
        StreamPart(P.TEXT_END, id="t"),
        StreamPart(P.FINISH, finish_reason=FinishReason.STOP),
    ]


CHATD_TEXTS = {name: chatd_text(deltas) for name, deltas in TEXTS.items()}
CHATD_TOOL_STEPS = [
    [
        StreamPart(P.TOOL_INPUT_START, id=CALL_IDS[k], tool_call_name="echo"),
        StreamPart(P.TOOL_INPUT_DELTA, id=CALL_IDS[k], delta=TOOL_ARGS[k]),
        StreamPart(P.TOOL_INPUT_END, id=CALL_IDS[k]),
        StreamPart(
            P.TOOL_CALL, id=CALL_IDS[k], tool_call_name="echo", tool_call_input=TOOL_ARGS[k]
        ),
        StreamPart(P.FINISH, finish_reason=FinishReason.TOOL_CALLS),
    ]
    for k in range(TOOL_STEPS)
]
CHATD_USER = [Message(Role.USER, [TextPart(PROMPT)])]
CHATD_ECHO_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
}


async def chatd_echo(call: ToolCall) -> ToolResponse:
    return ToolResponse.text(f"result {call.arguments()['n']}")


def chatd_closing_stream(call: Call) -> AsyncIterator[StreamPart]:
    results = [
        part.output
        for message in call.prompt
        for part in message.content
        if isinstance(part, ToolResultPart)
    ]
    last = results[-1]
    assert isinstance(last, ToolResultText)
    return stream_from_parts(chatd_text([closing_answer(len(results), last.text)]))


async def chatd_run(workload: str) -> Outcome:
    deltas: list[str] = []
    results: list[str] = []
    final: list[str] = []

    def publish(_role: Role, part: MessagePart) -> None:
        if isinstance(part, TextPart):
            deltas.append(part.text)

    async def persist(step: PersistedStep) -> None:
        for part in step.content:
            if isinstance(part, TextPart):
                final.append(part.text)
            elif isinstance(part, ToolResultPart):
                assert isinstance(part.output, ToolResultText)
                results.append(part.output.text)

    step = 0

    def stream(call: Call) -> AsyncIterator[StreamPart]:
        nonlocal step
        step += 1
        if workload in CHATD_TEXTS:
            return stream_from_parts(CHATD_TEXTS[workload])
        if step <= TOOL_STEPS:
            return stream_from_parts(CHATD_TOOL_STEPS[step - 1])
        return chatd_closing_stream(call)

    await run(
        RunOptions(
            model=FakeModel(stream_fn=stream),
            messages=CHATD_USER,
            tools=[Tool("echo", "Echo n back.", chatd_echo, CHATD_ECHO_SCHEMA)],
            max_steps=TOOL_STEPS + 1,
            persist_step=persist,
            publish_message_part=publish,
        )
    )
    return Outcome("".join(final), deltas, results)


# --- the floor -----------------------------------------------------------------------------


async def floor_run(workload: str) -> Outcome:
    deltas: list[str] = []
    if workload in CHATD_TEXTS:
        async for part in stream_from_parts(CHATD_TEXTS[workload]):
            if part.type is _TEXT_DELTA:
                deltas.append(part.delta)
        return Outcome("".join(deltas), deltas, [])
    results: list[str] = []
    for parts in CHATD_TOOL_STEPS:
        async for part in stream_from_parts(parts):
            if part.type is _TOOL_CALL:
                response = await chatd_echo(
                    ToolCall(part.id, part.tool_call_name, part.tool_call_input)
                )
                results.append(response.content)
    text = closing_answer(len(results), results[-1])
    return Outcome(text, [text], results)


async def floor_publishing_run(workload: str) -> Outcome:
    if workload not in CHATD_TEXTS:
        return await floor_run(workload)  # text only: the tool run is the plain floor's
    deltas: list[str] = []
    chunks: list[str] = []

    def publish(_role: Role, part: MessagePart) -> None:  # chatd_run's consumer
        if isinstance(part, TextPart):
            deltas.append(part.text)

    async for part in stream_from_parts(CHATD_TEXTS[workload]):
        if part.type is _TEXT_DELTA:
            chunks.append(part.delta)
            publish(Role.ASSISTANT, TextPart(part.delta))
    return Outcome("".join(chunks), deltas, [])


# --- measuring -----------------------------------------------------------------------------

FRAMEWORKS: dict[str, Callable[[str], Awaitable[Outcome]]] = {
    "chatd": chatd_run,
    "pydantic-ai": pydantic_ai_run,
    "openai-agents": openai_agents_run,
    "floor": floor_run,
    "floor+publish": floor_publishing_run,
}
PEERS = ("pydantic-ai", "openai-agents")


Seconds = dict[str, dict[str, float]]  # workload -> framework -> median seconds per run


async def medians(rounds: int) -> tuple[Seconds, Seconds]:
    """Median CPU and wall seconds per run, every framework and workload timed in each round.

    CPU time (this process, all threads) is the overhead itself and barely moves when other
    processes compete for the cores; wall time is what a user waits, and does.
    """
    cpu: dict[tuple[str, str], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    for workload in WORKLOADS:
        for name, fn in FRAMEWORKS.items():
            check(name, workload, await fn(workload))  # warm-up, and the first check
            cpu[workload, name], wall[workload, name] = [], []
    for _ in range(rounds):
        for workload in WORKLOADS:
            for name, fn in FRAMEWORKS.items():
                gc.collect()
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                outcome = await fn(workload)
                wall[workload, name].append(time.perf_counter() - start_wall)
                cpu[workload, name].append(time.process_time() - start_cpu)
                check(name, workload, outcome)

    def median(times: dict[tuple[str, str], list[float]]) -> Seconds:
        return {
            workload: {name: statistics.median(times[workload, name]) for name in FRAMEWORKS}
            for workload in WORKLOADS
        }

    return median(cpu), median(wall)


@dataclass
class Figures:
    part: float  # µs per delta, whole one-step run / deltas
    marginal: float  # µs per delta, fixed per-run cost excluded
    step: float  # µs per tool step, whole run / tool steps


def figures(seconds: Seconds) -> dict[str, Figures]:
    return {
        name: Figures(
            part=seconds["text"][name] / DELTAS * 1e6,
            marginal=(seconds["text"][name] - seconds["short"][name])
            / (DELTAS - SHORT_DELTAS)
            * 1e6,
            step=seconds["tools"][name] / TOOL_STEPS * 1e6,
        )
        for name in FRAMEWORKS
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:  # not Linux: fall back
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def report(cpu: dict[str, Figures], wall: dict[str, Figures], rounds: int) -> None:
    from importlib.metadata import version

    print(
        f"machine: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cpus ({cpu_model()}); pydantic-ai-slim "
        f"{version('pydantic-ai-slim')}, openai-agents {version('openai-agents')}; "
        f"medians of {rounds} interleaved rounds"
    )
    print(
        f"{DELTAS:,} text deltas in one step (per part: whole run / deltas; marginal: the "
        f"{DELTAS - SHORT_DELTAS:,} deltas beyond a {SHORT_DELTAS}-delta run); "
        f"{TOOL_STEPS} tool steps + closing answer (per step: whole run / {TOOL_STEPS})"
    )
    print(f"{'':14s} {'CPU µs/part':>11s} {'marginal':>9s} {'µs/step':>9s}   wall: ", end="")
    print(f"{'µs/part':>9s} {'marginal':>9s} {'µs/step':>9s}")
    for name in FRAMEWORKS:
        c, w = cpu[name], wall[name]
        print(f"{name:14s} {c.part:11.2f} {c.marginal:9.2f} {c.step:9.1f}         ", end="")
        print(f"{w.part:9.2f} {w.marginal:9.2f} {w.step:9.1f}")
    for clock, f in (("CPU", cpu), ("wall", wall)):
        ours, floor = f["chatd"], f["floor"]
        print(f"ratios chatd/peer, {clock} time (in brackets: how many times lower chatd is):")
        for peer in PEERS:
            p = f[peer]
            print(
                f"  {peer:14s} part {ours.part / p.part:.4f} ({p.part / ours.part:.0f}x), "
                f"marginal {ours.marginal / p.marginal:.4f} ({p.marginal / ours.marginal:.0f}x), "
                f"step {ours.step / p.step:.4f} ({p.step / ours.step:.0f}x)"
            )
        print(
            f"  {'floor':14s} part {ours.part / floor.part:.2f}x floor "
            f"(net {ours.part - floor.part:.2f} µs), "
            f"marginal {ours.marginal / floor.marginal:.2f}x floor "
            f"(net {ours.marginal - floor.marginal:.2f} µs), "
            f"step {ours.step / floor.step:.1f}x floor"
        )
        publishing = f["floor+publish"]
        print(
            f"  {'floor+publish':14s} part {ours.part / publishing.part:.2f}x, "
            f"marginal {ours.marginal / publishing.marginal:.2f}x "
            f"(net {ours.marginal - publishing.marginal:.2f} µs)"
        )
    ours, floor = cpu["chatd"], cpu["floor"]
    targets = [
        ("part >= 3x lower than openai-agents", cpu["openai-agents"].marginal / ours.marginal >= 3),
        ("part >= 30x lower than pydantic-ai", cpu["pydantic-ai"].marginal / ours.marginal >= 30),
        ("part <= 5 µs (1.8 µs stretch)", ours.part <= 5),
        ("part <= 1.8 µs", ours.part <= 1.8),
        ("part <= 2x floor", ours.marginal <= 2 * floor.marginal),
        ("part net of floor <= 2x floor", ours.marginal - floor.marginal <= 2 * floor.marginal),
        ("step >= 10x lower than both peers", all(cpu[p].step / ours.step >= 10 for p in PEERS)),
        ("step <= 200 µs", ours.step <= 200),
    ]
    print("targets (DESIGN.md, issue 11), CPU time; part ratios on the marginal figures:")
    for what, met in targets:
        print(f"  {'met   ' if met else 'MISSED'} {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds (median)")
    args = parser.parse_args()
    set_tracing_disabled(True)
    cpu, wall = asyncio.run(medians(args.rounds))
    report(figures(cpu), figures(wall), args.rounds)


if __name__ == "__main__":
    main()
