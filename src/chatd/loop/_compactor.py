"""When the loop compacts: token accounting between steps and the compaction sequence.

`compaction.py` knows how to summarise; this module knows when, and what to do
around it: publish progress, record the metric, persist (shielded), reload. Two
checks: after a step, on the usage the provider reported for it (upstream's
rule, `compact_after_step`), and before a step, on that usage plus an estimate of
what was appended since (`maybe_compact`, which also catches a history that
overflows before the first step). The check before a step re-checks at most
`MAX_COMPACTIONS_PER_STEP` times, so a model whose summaries do not shrink the
prompt cannot loop forever, and does not retry a compaction that just failed
after the step. When to call which is the run's business (`_run.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from chatd.errors import ClassifiedError, ErrorKind
from chatd.loop._errors import StreamError
from chatd.loop._stream import Publish, StepState
from chatd.loop.compaction import (
    BYTES_PER_TOKEN,
    MAX_COMPACTIONS_PER_STEP,
    CompactionOptions,
    CompactionResult,
    compact,
    should_compact,
)
from chatd.loop.metrics import Metrics
from chatd.protocols import Model
from chatd.types import (
    Message,
    Role,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
    ToolResultText,
    Usage,
)

__all__ = ["Compactor"]

T = TypeVar("T")

CONTEXT_OVERFLOW_MESSAGE = (
    "The conversation no longer fits the model's context window and could not be "
    "compacted. Start a new chat or clear the context."
)


class Compactor:
    """Per-run compaction state: the last reported usage and the known context limit."""

    def __init__(
        self,
        *,
        model: Model,
        options: CompactionOptions | None,
        metrics: Metrics,
        publish: Publish | None,
        interruptible: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]],
        reload_messages: Callable[[], Awaitable[list[Message]]] | None,
        fallback_limit: int,
        prompt_bytes: Callable[[list[Message]], int],
    ) -> None:
        self.model = model
        self.options = options
        self.metrics = metrics
        self.publish = publish
        self.interruptible = interruptible
        self.reload_messages = reload_messages
        self.fallback_limit = fallback_limit
        self.prompt_bytes = prompt_bytes
        limit = getattr(model, "context_limit", None)
        self.model_limit: int | None = limit if isinstance(limit, int) and limit > 0 else None
        # Tokens the last step's prompt used (as the provider reported them) and the
        # length of the history that prompt was built from.
        self.usage_tokens: int | None = None
        self.usage_len = 0
        self.usage_bytes = 0
        # False after a failed compaction after a step: the check before the next
        # step then does not try again (it only fails a prompt that cannot fit).
        self.retry_before_step = True
        self._ids = itertools.count(1)

    @property
    def enabled(self) -> bool:
        return self.options is not None and self.options.enabled

    def observe_step(
        self, state: StepState, prompt: list[Message], metadata_limit: int | None
    ) -> None:
        """Remember the usage the provider reported for the prompt built from `prompt`."""
        tokens = state.usage.context_tokens()
        self.usage_tokens = tokens if tokens > 0 else None
        self.usage_len = len(prompt)
        self.usage_bytes = self.prompt_bytes(prompt)
        if metadata_limit:
            self.model_limit = metadata_limit

    def context_limit(self) -> int:
        assert self.options is not None
        for limit in (self.model_limit, self.options.context_limit, self.fallback_limit):
            if limit and limit > 0:
                return limit
        return 0

    def next_prompt_tokens(self, history: list[Message]) -> int:
        """The reported usage of the last prompt plus an estimate of what was appended."""
        assert self.options is not None
        count = self.options.count_tokens
        if count is None:
            # Byte sizes come from the run's incremental prompt-size cache: O(new messages).
            size = self.prompt_bytes(history)
            if self.usage_tokens is not None and self.usage_len <= len(history):
                tail = max(size - self.usage_bytes, 0)
                return self.usage_tokens + math.ceil(tail / BYTES_PER_TOKEN)
            return math.ceil(size / BYTES_PER_TOKEN)
        if self.usage_tokens is not None and self.usage_len <= len(history):
            return self.usage_tokens + count(history[self.usage_len :])
        return count(history)

    async def maybe_compact(self, history: list[Message]) -> list[Message]:
        """Before a step: the history to send, compacted when the next prompt calls for it.

        Raises `StreamError` (config) when the prompt exceeds the limit and could not
        be compacted.
        """
        options = self.options
        assert options is not None
        retry, self.retry_before_step = self.retry_before_step, True
        for _ in range(MAX_COMPACTIONS_PER_STEP):
            limit = self.context_limit()
            tokens = self.next_prompt_tokens(history)
            if not should_compact(tokens, limit, options.normalized_threshold):
                return history
            result = await self._compact_once(history, tokens, limit) if retry else None
            if result is None:
                if tokens > limit:
                    raise StreamError(
                        "stream response: context window exceeded",
                        ClassifiedError(
                            kind=ErrorKind.CONFIG,
                            provider=self.model.provider,
                            message=CONTEXT_OVERFLOW_MESSAGE,
                        ),
                    )
                return history
            history = await self._adopt(result)
        return history

    async def compact_after_step(
        self, history: list[Message], usage: Usage, metadata_limit: int | None
    ) -> list[Message] | None:
        """After a step: the compacted history when the step's reported usage reached the
        threshold, else None (compaction off, below it, no usage reported, or it failed)."""
        options = self.options
        if options is None or not options.enabled:
            return None
        if metadata_limit:
            self.model_limit = metadata_limit
        tokens = usage.context_tokens()
        limit = self.context_limit()
        if not should_compact(tokens, limit, options.normalized_threshold):
            return None
        result = await self._compact_once(history, tokens, limit)
        if result is None:
            self.retry_before_step = False
            return None
        return await self._adopt(result)

    async def _adopt(self, result: CompactionResult) -> list[Message]:
        """The history after `result` was persisted: reloaded, or the compacted one."""
        self.usage_tokens = None  # until the next step reports real usage
        if self.reload_messages is not None:
            return list(await self.reload_messages())
        return list(result.messages)

    async def _compact_once(
        self, history: list[Message], tokens: int, limit: int
    ) -> CompactionResult | None:
        options = self.options
        assert options is not None
        provider, model_name = self.model.provider, self.model.model
        call_id = f"compaction_{next(self._ids)}"
        if self.publish is not None:
            self.publish(Role.ASSISTANT, ToolCallPart(call_id, options.tool_name))
        try:
            result: CompactionResult = await self.interruptible(
                compact(self.model, history, options, context_tokens=tokens, context_limit=limit)
            )
            if options.persist is not None:
                await asyncio.shield(options.persist(result))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.metrics.record_compaction(provider, model_name, False, err)
            self._publish_result(call_id, ToolResultError(_failure_text(err)))
            if options.on_error is not None:
                options.on_error(err)
            return None
        self.metrics.record_compaction(provider, model_name, True, None)
        self._publish_result(call_id, ToolResultText(json.dumps(result.report())))
        return result

    def _publish_result(self, call_id: str, output: ToolResultText | ToolResultError) -> None:
        if self.publish is not None and self.options is not None:
            self.publish(Role.TOOL, ToolResultPart(call_id, self.options.tool_name, output))


def _failure_text(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return json.dumps({"error": "compaction timed out"})
    return json.dumps({"error": str(err) or type(err).__name__})
