"""The fake workload every framework runs, and the check that each run produced it.

- text: one model step streaming `DELTAS` text deltas (and a `SHORT_DELTAS` cut of the same
  stream, so the cost of the deltas alone can be told from the fixed cost of a run); the
  consumer sees every delta live, and the final text is their concatenation.
- tools: `TOOL_STEPS` model steps with one tool call each (`echo(n=k)` returns "result k"),
  then a closing step whose answer names how many tool results the model was sent back
  and the last one, so a run that did not feed results back cannot pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DELTAS = 2_000
SHORT_DELTAS = 200  # the same stream cut short: the difference is the cost of the deltas alone
TOOL_STEPS = 20

DELTA_TEXT = [f"t{i} " for i in range(DELTAS)]
TEXTS = {"text": DELTA_TEXT, "short": DELTA_TEXT[:SHORT_DELTAS]}
WORKLOADS = ("text", "short", "tools")
TOOL_RESULTS = [f"result {k}" for k in range(TOOL_STEPS)]
TOOL_ARGS = [json.dumps({"n": k}) for k in range(TOOL_STEPS)]
CALL_IDS = [f"call_{k}" for k in range(TOOL_STEPS)]
PROMPT = "go"


def closing_answer(results_seen: int, last: str) -> str:
    """The closing step's text: proves every tool result was fed back to the model."""
    return f"done: {results_seen} results, last {last}"


CLOSING_TEXT = closing_answer(TOOL_STEPS, TOOL_RESULTS[-1])


@dataclass
class Outcome:
    """What one run produced, as its consumer saw it."""

    final_text: str
    deltas: list[str]
    tool_results: list[str]


def check(name: str, workload: str, got: Outcome) -> None:
    if workload in TEXTS:
        deltas = TEXTS[workload]
        want = Outcome("".join(deltas), deltas, [])
    else:
        want = Outcome(CLOSING_TEXT, [CLOSING_TEXT], TOOL_RESULTS)
    if got != want:
        raise AssertionError(
            f"{name} ({workload}) produced a wrong result: final text {got.final_text[:60]!r} "
            f"({len(got.deltas)} deltas, {len(got.tool_results)} tool results "
            f"{got.tool_results[:3]}…); expected {want.final_text[:60]!r} "
            f"({len(want.deltas)} deltas, {len(want.tool_results)} tool results)"
        )
