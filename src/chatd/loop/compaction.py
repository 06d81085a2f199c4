"""Context compaction: summarise a long history so the chat fits its model's context window.

When a step's reported usage reaches `threshold_percent` of the context limit (or,
before a step, the next prompt would), the loop asks the same model for a summary
(90 s timeout) and continues with the system prompts, the summary (a system
message of kind "summary") and the most recent messages that fit
`keep_recent_percent` of the limit, cut only where a tool call and its result
stay together. What the summary replaced is the
persistence layer's business: it hides those messages, it never deletes them.

This module holds the decision (`should_compact`), the cut (`kept_tail_start`) and
the summary call (`compact`); the loop (`_run.py`) decides when to call them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatd.loop.metrics import estimate_prompt_size
from chatd.protocols import Call, Model
from chatd.types import MESSAGE_KIND_SUMMARY, Message, Role, TextPart

__all__ = [
    "DEFAULT_KEEP_RECENT_PERCENT",
    "DEFAULT_SUMMARY_PROMPT",
    "DEFAULT_SYSTEM_SUMMARY_PREFIX",
    "DEFAULT_THRESHOLD_PERCENT",
    "DEFAULT_TIMEOUT",
    "MAX_COMPACTIONS_PER_STEP",
    "MAX_COMPACTION_REENTRIES",
    "CompactionError",
    "CompactionOptions",
    "CompactionResult",
    "clear_context",
    "compact",
    "estimate_tokens",
    "kept_tail_start",
    "should_compact",
]

# 70 %: upstream's default, leaving room for the reply and the next tool results.
DEFAULT_THRESHOLD_PERCENT = 70
# 90 s: a summary is one non-streamed call over the whole history.
DEFAULT_TIMEOUT = 90.0
# The most recent messages kept verbatim may use at most this share of the limit.
DEFAULT_KEEP_RECENT_PERCENT = 20
# Re-check bound before a step: a model whose summaries do not shrink the prompt
# cannot loop forever.
MAX_COMPACTIONS_PER_STEP = 3
# A run whose model stopped on a step after which the history was compacted goes
# back into the step loop on the summary at most this often (upstream's
# maxCompactionRetries), so a model that keeps ending above the threshold stops.
MAX_COMPACTION_REENTRIES = 3
# A rough, conservative tokenizer: about four bytes of UTF-8 per token.
BYTES_PER_TOKEN = 4

DEFAULT_SUMMARY_PROMPT = """\
This is a context compaction. Summarise the conversation so far so that a new \
assistant, seeing only your summary, can continue the work without asking again. \
Include: the overall goal and the current task; key decisions and their reasons; \
concrete technical details (file paths, functions, commands, APIs, configuration, \
names, numbers and facts the user gave); errors met and how they were resolved; the \
state of the work as DONE / IN PROGRESS / REMAINS; and what was being done when this \
compaction started. Carry forward everything from any earlier summary that still \
matters. Be dense and factual; no pleasantries."""

DEFAULT_SYSTEM_SUMMARY_PREFIX = """\
The earlier part of this conversation was compacted. The following summary replaces \
it; the assistant was in the middle of the work described and should continue it."""


class CompactionError(Exception):
    """A summary could not be produced or persisted."""


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What a compaction produced, for the persistence layer and for clients.

    `messages` is the new history: system prompts, the summary, the kept tail.
    `kept_tail_count` messages at the end of the compacted history were kept verbatim;
    everything else except the leading system prompts was replaced by the summary.
    """

    system_summary: str
    summary_report: str
    threshold_percent: int
    usage_percent: float
    context_tokens: int
    context_limit: int
    kept_tail_count: int
    messages: list[Message]
    source: str = "automatic"

    def report(self) -> dict[str, object]:
        """The JSON shown to clients in the compaction tool result."""
        return {
            "summary": self.summary_report,
            "source": self.source,
            "threshold_percent": self.threshold_percent,
            "usage_percent": round(self.usage_percent, 2),
            "context_tokens": self.context_tokens,
            "context_limit_tokens": self.context_limit,
        }


@dataclass(frozen=True, slots=True)
class CompactionOptions:
    """Automatic compaction for a run. `threshold_percent=100` disables it."""

    threshold_percent: int = DEFAULT_THRESHOLD_PERCENT
    # Overrides the model's own limit when > 0 (the model's reported window wins).
    context_limit: int = 0
    timeout: float = DEFAULT_TIMEOUT
    keep_recent_percent: int = DEFAULT_KEEP_RECENT_PERCENT
    summary_prompt: str = DEFAULT_SUMMARY_PROMPT
    system_summary_prefix: str = DEFAULT_SYSTEM_SUMMARY_PREFIX
    # Persist the summary and hide what it replaced; runs shielded from interrupts.
    persist: Callable[[CompactionResult], Awaitable[None]] | None = None
    on_error: Callable[[BaseException], None] | None = None
    count_tokens: Callable[[Sequence[Message]], int] | None = None
    tool_name: str = "chat_summarized"

    @property
    def enabled(self) -> bool:
        return self.normalized_threshold < 100

    @property
    def normalized_threshold(self) -> int:
        return self.threshold_percent if 0 <= self.threshold_percent <= 100 else 70


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A conservative token estimate: prompt bytes / 4, rounded up."""
    return math.ceil(estimate_prompt_size(messages) / BYTES_PER_TOKEN)


def should_compact(tokens: int, limit: int, threshold_percent: int) -> bool:
    """True when `tokens` reach `threshold_percent` of `limit` (exactly at it included)."""
    if tokens <= 0 or limit <= 0 or not 0 <= threshold_percent < 100:
        return False
    return tokens * 100 >= threshold_percent * limit


def _leading_system_count(history: Sequence[Message]) -> int:
    count = 0
    for message in history:
        if message.role != Role.SYSTEM or message.is_summary:
            break
        count += 1
    return count


def kept_tail_start(
    history: Sequence[Message],
    budget_tokens: int,
    count_tokens: Callable[[Sequence[Message]], int] = estimate_tokens,
) -> int:
    """Index of the first message kept verbatim after a compaction (len(history) = none).

    The tail starts at the latest user message or later, at a user or assistant
    message (never at a tool message, so a tool call is never separated from its
    result), and is the longest such tail within `budget_tokens`.
    """
    start = _leading_system_count(history)
    last_user = max(
        (i for i in range(start, len(history)) if history[i].role == Role.USER), default=None
    )
    if last_user is None:
        return len(history)
    for index in range(last_user, len(history)):
        if history[index].role not in (Role.USER, Role.ASSISTANT):
            continue
        if count_tokens(history[index:]) <= budget_tokens:
            return index
    return len(history)


def clear_context(history: Sequence[Message]) -> list[Message]:
    """A fresh start: only the leading system prompts remain in the prompt."""
    return list(history[: _leading_system_count(history)])


async def compact(
    model: Model,
    history: Sequence[Message],
    options: CompactionOptions,
    *,
    context_tokens: int,
    context_limit: int,
    source: str = "automatic",
) -> CompactionResult:
    """Summarise `history` with `model` (under `options.timeout`) into a new history.

    Raises `CompactionError` when the model fails or returns an empty summary,
    `TimeoutError` when it takes too long. Persisting is the caller's job.
    """
    prompt = [*history, Message(Role.USER, [TextPart(options.summary_prompt)])]
    try:
        async with asyncio.timeout(options.timeout):
            response = await model.generate(Call(prompt=prompt, tool_choice="none"))
    except (TimeoutError, asyncio.CancelledError):
        raise
    except Exception as err:
        raise CompactionError(f"generate summary text: {err}") from err
    summary = " ".join(
        p.text.strip() for p in response.content if isinstance(p, TextPart) and p.text.strip()
    )
    if not summary:
        raise CompactionError("compaction produced an empty summary")
    count = options.count_tokens or estimate_tokens
    budget = context_limit * options.keep_recent_percent // 100
    tail_start = kept_tail_start(history, budget, count)
    system_summary = f"{options.system_summary_prefix}\n\n{summary}".strip()
    summary_message = Message(Role.SYSTEM, [TextPart(system_summary)], kind=MESSAGE_KIND_SUMMARY)
    return CompactionResult(
        system_summary=system_summary,
        summary_report=summary,
        threshold_percent=options.normalized_threshold,
        usage_percent=context_tokens * 100 / context_limit if context_limit else 0.0,
        context_tokens=context_tokens,
        context_limit=context_limit,
        kept_tail_count=len(history) - tail_start,
        messages=[*clear_context(history), summary_message, *history[tail_start:]],
        source=source,
    )
