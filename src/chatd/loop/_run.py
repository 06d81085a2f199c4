"""`run()`: the agent loop. Stream a step, run its tools, persist it, repeat.

One run drives one chat turn for as many steps as the model keeps asking for
tools (up to `max_steps`). Every finished step goes to `persist_step` before the
next starts, so a crash loses at most the step in flight. The loop never touches
HTTP or a database: persistence, publishing and history reloads are callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import Histogram

from chatd.errors import (
    ClassifiedError,
    ClassifiedException,
    ErrorKind,
    classify,
    with_classification,
)
from chatd.loop._clock import Clock, SystemClock, Timer
from chatd.loop._compactor import Compactor
from chatd.loop._errors import (
    ChatInterrupted,
    DynamicToolCall,
    Interrupt,
    PersistStepError,
    StartupTimeout,
    StopAfterTool,
    StreamError,
    _Interrupted,
)
from chatd.loop._history import find_context_limit, to_response_messages
from chatd.loop._stream import Publish, StepState, consume_stream
from chatd.loop._tools import exclusive_policy_errors, run_tool
from chatd.loop.compaction import MAX_COMPACTION_REENTRIES, CompactionOptions
from chatd.loop.metrics import Metrics, NopMetrics, estimate_prompt_size, tool_result_size
from chatd.loop.retry import OnRetry, retry
from chatd.protocols import Call, Model, ModelSettings, ProviderTool, Tool, ToolDefinition
from chatd.types import (
    FinishReason,
    Message,
    MessagePart,
    PendingToolCall,
    PersistedStep,
    Role,
    ToolCallPart,
    ToolResultError,
    ToolResultPart,
    Usage,
)

__all__ = ["PendingToolCall", "PersistedStep", "RunOptions", "RunOutcome", "run"]

T = TypeVar("T")

# 60 s: a provider that has sent nothing for this long after a request is treated
# as a startup timeout and retried (upstream chatloop's default).
DEFAULT_STARTUP_TIMEOUT = 60.0
INTERRUPTED_TOOL_RESULT = "tool call was interrupted before it produced a result"


PersistStep = Callable[[PersistedStep], Awaitable[None]]
_PreparePrompt = Callable[[list[Message]], list[Message]]
_PersistableContent = Callable[[list[MessagePart]], list[MessagePart]]
_BreakChain = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(kw_only=True, slots=True)
class RunOptions:
    """Everything one run needs. `model` and `persist_step` are required."""

    model: Model | None = None
    persist_step: PersistStep | None = None
    # Automatic context compaction (None: never compact).
    compaction: CompactionOptions | None = None
    # Reload history from the persistence layer after a compaction was persisted.
    reload_messages: Callable[[], Awaitable[list[Message]]] | None = None
    messages: list[Message] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    max_steps: int = 1  # <= 0 means 1
    # Names of tools offered this turn; empty means every tool.
    active_tools: list[str] = field(default_factory=list)
    # Only labels for logs and metrics: which tools are chatd's own.
    builtin_tool_names: set[str] = field(default_factory=set)
    # Tools the client runs: the step is persisted and the run ends in DynamicToolCall.
    dynamic_tool_names: set[str] = field(default_factory=set)
    # Tools whose successful result ends the run (StopAfterTool).
    stop_after_tools: set[str] = field(default_factory=set)
    # Tools that must be the only call of their step.
    exclusive_tool_names: set[str] = field(default_factory=set)
    # Tools this run does not offer, each with the reason a call of it gets as its
    # error (instead of "Tool not found"), e.g. why a sub-agent cannot spawn.
    unavailable_tools: dict[str, str] = field(default_factory=dict)
    # Provider-native tools, their definitions sent as they are: run by the provider
    # (web search; a bare ToolDefinition is one) or by their `runner` here.
    provider_tools: list[ProviderTool | ToolDefinition] = field(default_factory=list)
    settings: ModelSettings = field(default_factory=ModelSettings)
    provider_options: dict[str, Any] = field(default_factory=dict)
    context_limit_fallback: int = 0
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT  # <= 0 means the default
    clock: Clock = field(default_factory=SystemClock)
    publish_message_part: Publish | None = None
    prepare_messages: Callable[[list[Message]], list[Message] | None] | None = None
    on_retry: OnRetry | None = None
    # Called once when the run leaves the model's response chain (its
    # `break_response_chain` hook dropped the chain from the provider options):
    # after the first step, or when the chain broke. Later attempts and steps
    # send the full history.
    disable_chain_mode: Callable[[], None] | None = None
    on_interrupted_persist_error: Callable[[BaseException], None] | None = None
    metrics: Metrics | None = None
    interrupt: Interrupt | None = None


class RunOutcome(enum.StrEnum):
    """How a run ended normally; every finished step was persisted before it returns."""

    FINISHED = "finished"  # the model stopped asking for tools
    MAX_STEPS = "max_steps"  # `max_steps` steps ran (a success: the turn ends there)
    STOP_AFTER_TOOL = "stop_after_tool"  # a stop-after tool succeeded
    REQUIRES_ACTION = "requires_action"  # client tools must run (the step is persisted)
    INTERRUPTED = "interrupted"  # the partial step was persisted first


async def run(opts: RunOptions) -> RunOutcome:
    """Run the agent loop until the model stops or `max_steps` is reached.

    Returns how the turn ended (`RunOutcome`). Raises only for failures:
    `StreamError` when the model failed for good, `PersistStepError` when
    persisting failed, and `asyncio.CancelledError` on plain cancellation.
    """
    if opts.model is None:
        raise ValueError("chat model is required")
    if opts.persist_step is None:
        raise ValueError("persist step callback is required")
    try:
        return await _Run(opts, opts.model, opts.persist_step).run()
    except ChatInterrupted:
        return RunOutcome.INTERRUPTED
    except DynamicToolCall:
        return RunOutcome.REQUIRES_ACTION
    except StopAfterTool:
        return RunOutcome.STOP_AFTER_TOOL


class _StartupGuard:
    """Cancels an attempt that produced no part within the startup timeout (one-shot)."""

    __slots__ = ("_timer", "fired", "target")

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.fired = False
        self.target: asyncio.Future[Any] | None = None
        self._timer: Timer | None = clock.call_later(timeout, self._fire)

    def _fire(self) -> None:
        if self._timer is None:
            return
        self._timer = None
        self.fired = True
        if self.target is not None:
            self.target.cancel()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Run:
    def __init__(self, opts: RunOptions, model: Model, persist: PersistStep) -> None:
        self.o = opts
        self.model = model
        self.persist = persist
        self.provider = model.provider
        # The model's optional hooks (chatd.protocols.ModelHooks), looked up once.
        self.prepare_prompt: _PreparePrompt | None = getattr(model, "prepare_prompt", None)
        self.persistable_content: _PersistableContent | None = getattr(
            model, "persistable_content", None
        )
        self.break_response_chain: _BreakChain | None = getattr(model, "break_response_chain", None)
        self.clock = opts.clock
        self.interrupt = opts.interrupt or Interrupt()
        self.max_steps = max(opts.max_steps, 1)
        self.startup_timeout = (
            opts.startup_timeout if opts.startup_timeout > 0 else DEFAULT_STARTUP_TIMEOUT
        )
        self.tools = {tool.name: tool for tool in opts.tools}
        active = set(opts.active_tools)
        self.active = active or set(self.tools)
        provider_tools = [
            t if isinstance(t, ProviderTool) else ProviderTool(t) for t in opts.provider_tools
        ]
        self.definitions = [
            ToolDefinition(t.name, t.description, t.input_schema, t.provider_options)
            for t in opts.tools
            if t.name in self.active
        ] + [t.definition for t in provider_tools]
        # Provider tools run here (computer use), by their runner's name: offered to
        # the provider as they are, so runnable whatever `active_tools` says.
        self.provider_runners = {t.runner.name: t for t in provider_tools if t.runner is not None}
        metrics = opts.metrics or _nop_metrics()
        self.metrics = metrics
        labels = (self.provider, model.model)
        self.steps_total = metrics.steps_total.labels(*labels)
        self.message_count = metrics.message_count.labels(*labels)
        self.prompt_size = metrics.prompt_size_bytes.labels(*labels)
        self.ttft = metrics.ttft_seconds.labels(*labels)
        # Tool name -> its labelled result-size histogram: `labels()` takes a lock and
        # builds a key, once per tool per run instead of once per result.
        self.result_sizes: dict[str, Histogram] = {}
        # What an interrupted step would persist: the attempt in flight and any
        # tool results finished so far.
        self.state = StepState()
        self.results: list[ToolResultPart | None] = []
        # The usage and context limit the last step reported, for the check after the run.
        self.last_usage = Usage()
        self.last_limit: int | None = None
        # The prompt size of the history seen last step, so the next step only
        # measures what was appended (history grows by a step at a time).
        self._sized: tuple[Message, Message, int, int] | None = None
        self.provider_options = opts.provider_options
        self._compactor = Compactor(
            model=model,
            options=opts.compaction,
            metrics=metrics,
            publish=opts.publish_message_part,
            interruptible=self._interruptible,
            reload_messages=opts.reload_messages,
            fallback_limit=opts.context_limit_fallback,
            prompt_bytes=self._prompt_size,
        )

    # --- the step loop -----------------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Steps until the model stops or `max_steps` ran, then re-entry after compaction.

        Upstream's rule: when the history was compacted after the step on which the
        model stopped (or by the check after the run, when no step of the pass
        compacted), the model never saw the summary, so the step loop runs again on
        it, at most `MAX_COMPACTION_REENTRIES` times and within `max_steps` overall.
        """
        history = list(self.o.messages)
        outcome = RunOutcome.MAX_STEPS
        steps = 0
        for reentry in range(MAX_COMPACTION_REENTRIES + 1):
            compacted_in_pass = stopped = False
            compacted_last: bool | None = None
            while steps < self.max_steps and not stopped:
                steps += 1
                history, should_continue, compacted_last = await self._step(history)
                compacted_in_pass |= bool(compacted_last)
                stopped = not should_continue
                outcome = RunOutcome.MAX_STEPS if should_continue else RunOutcome.FINISHED
            if compacted_last is None and not compacted_in_pass:
                # The check after the run, on the last usage reported: for a last
                # step that persisted nothing (so was not checked), or a re-entry
                # that had no step left.
                history, compacted_last = await self._compact_after(
                    history, self.last_usage, self.last_limit
                )
            if not (stopped and compacted_last and reentry < MAX_COMPACTION_REENTRIES):
                return outcome
        return outcome

    async def _step(self, history: list[Message]) -> tuple[list[Message], bool, bool | None]:
        """One step: (the history after it, whether the model wants another, whether the
        history was compacted after it; None when the step persisted nothing, so was
        not checked)."""
        o = self.o
        self.steps_total.inc()
        step_start = self.clock.now()
        # Nothing of the previous (already persisted) step may leak into an
        # interrupted persist of this one.
        self.state = StepState()
        self.results = []
        if self._compactor.enabled:
            try:
                history = await self._compactor.maybe_compact(history)
            except _Interrupted:
                raise ChatInterrupted() from None
        if o.prepare_messages is not None:
            replaced = o.prepare_messages(history)
            if replaced is not None:
                history = list(replaced)
        prepared = history if self.prepare_prompt is None else self.prepare_prompt(history)
        self.message_count.observe(len(prepared))
        self.prompt_size.observe(self._prompt_size(history))
        call = Call(
            prompt=list(prepared),
            tools=self.definitions,
            settings=o.settings,
            provider_options=self.provider_options,
        )
        try:
            # A successful attempt has already run the step's local tools (in its child
            # task, see `_consume_and_run_tools`); what is left is publishing their results.
            state = await self._generate(call)
            should_continue = _wants_tools(state)
            dynamic = self._finish_tools(state) if should_continue else []
        except _Interrupted:
            await self._persist_interrupted()
            raise ChatInterrupted() from None

        metadata_limit = (
            find_context_limit(state.provider_metadata) if state.provider_metadata else None
        )
        self._compactor.observe_step(state, history, metadata_limit)
        self.last_usage, self.last_limit = state.usage, metadata_limit
        content = state.content
        if self.persistable_content is not None:
            content = self.persistable_content(content)
        if not content and not dynamic:
            return history, False, None  # the model said nothing: nothing to persist
        step = PersistedStep(
            content=content,
            usage=state.usage,
            context_limit=self._context_limit(state),
            provider_response_id=_response_id(state.provider_metadata),
            runtime=self.clock.now() - step_start,
            tool_call_created_at=state.tool_call_created_at,
            tool_result_created_at=state.tool_result_created_at,
            pending_dynamic_tool_calls=[
                PendingToolCall(c.tool_call_id, c.tool_name, c.input) for c in dynamic
            ],
        )
        await self._persist(step)
        history.extend(to_response_messages(content))
        if not dynamic:
            # A response chain continues one stored response; after the first step of
            # the run the loop sends the history it holds instead (upstream's rule).
            self._leave_chain_mode()
        if dynamic or self._stop_after_tool_succeeded(content):
            # The run ends here, before the checks after a step and after the run:
            # compact now so the next turn does not start over the threshold.
            with contextlib.suppress(_Interrupted):
                await self._compactor.compact_after_step(history, state.usage, metadata_limit)
            raise DynamicToolCall() if dynamic else StopAfterTool()
        history, compacted = await self._compact_after(history, state.usage, metadata_limit)
        return history, should_continue, compacted

    async def _compact_after(
        self, history: list[Message], usage: Usage, metadata_limit: int | None
    ) -> tuple[list[Message], bool]:
        """The check after a step (or after the run) on `usage`: the history to go on with
        and whether it was compacted."""
        try:
            compacted = await self._compactor.compact_after_step(history, usage, metadata_limit)
        except _Interrupted:
            raise ChatInterrupted() from None  # the step itself is already persisted
        return (history, False) if compacted is None else (compacted, True)

    def _prompt_size(self, history: list[Message]) -> int:
        sized = self._sized
        if (
            sized is not None
            and len(history) >= sized[2]
            and history[0] is sized[0]
            and history[sized[2] - 1] is sized[1]
        ):
            size = sized[3] + estimate_prompt_size(history[sized[2] :])
        else:
            size = estimate_prompt_size(history)
        self._sized = (history[0], history[-1], len(history), size) if history else None
        return size

    def _leave_chain_mode(self) -> None:
        if self.break_response_chain is None:
            return
        options = self.break_response_chain(self.provider_options)
        if options is None:
            return  # no chain (any more)
        self.provider_options = options
        if self.o.disable_chain_mode is not None:
            self.o.disable_chain_mode()

    # --- generation -----------------------------------------------------------------

    async def _generate(self, call: Call) -> StepState:
        try:
            return await retry(
                lambda: self._attempt(call),
                on_retry=self._on_retry,
                classify_error=self._classify,
                sleep=self._sleep,
            )
        except ClassifiedException as err:
            raise StreamError(f"stream response: {err}", err.classified) from err

    def _classify(self, err: BaseException) -> ClassifiedError:
        return classify(err, provider=self.provider)

    async def _sleep(self, seconds: float) -> None:
        await self._interruptible(self.clock.sleep(seconds))

    def _on_retry(
        self, attempt: int, err: BaseException, classified: ClassifiedError, delay: float
    ) -> None:
        classified = classified.with_provider(self.provider)
        self.state = StepState()  # the failed attempt's partial content is discarded
        if classified.chain_broken:
            self._leave_chain_mode()
        # Count before the user's callback, so a failing callback cannot drop the sample.
        self.metrics.record_stream_retry(self.provider, self.model.model, classified)
        if self.o.on_retry is not None:
            self.o.on_retry(attempt, err, classified, delay)

    async def _attempt(self, call: Call) -> StepState:
        if self.interrupt.is_set:
            raise _Interrupted
        if call.provider_options is not self.provider_options:
            # Chain mode ended during this step (the provider lost the response
            # chain): this attempt resends the full history.
            call = dataclasses.replace(call, provider_options=self.provider_options)
        # A fresh state per attempt: a failed attempt's partial content is discarded.
        state = self.state = StepState()
        opened_at = self.clock.now()
        guard = _StartupGuard(self.clock, self.startup_timeout)
        child = guard.target = asyncio.ensure_future(
            self._consume_and_run_tools(call, state, opened_at, guard)
        )
        try:
            await self._interruptible(child)
        except asyncio.CancelledError:
            if guard.fired and child.cancelled() and not _cancelling():
                raise self._startup_timeout(StartupTimeout()) from None
            raise
        except Exception as err:
            if self.interrupt.is_set:
                raise _Interrupted from None
            if guard.fired:
                raise self._startup_timeout(err) from None
            raise
        finally:
            guard.disarm()
        if self.interrupt.is_set:
            raise _Interrupted  # some providers just close the stream when cancelled
        if guard.fired:
            raise self._startup_timeout(StartupTimeout())
        return state

    def _startup_timeout(self, err: BaseException) -> ClassifiedException:
        return with_classification(
            err,
            ClassifiedError(kind=ErrorKind.STARTUP_TIMEOUT, provider=self.provider, retryable=True),
        )

    async def _consume_and_run_tools(
        self, call: Call, state: StepState, opened_at: float, guard: _StartupGuard
    ) -> None:
        """The attempt's child task: stream the step, then run its local tools.

        One child per step instead of one for the stream and one for the tools: an
        interrupt cancels this child wherever it is (the partial step is persisted from
        `self.state` and `self.results` either way). Tools never raise (failures become
        results), so a retry can only ever come from the stream part of the attempt.
        """
        await self._open_and_consume(call, state, opened_at, guard)
        if self.interrupt.is_set or guard.fired or not _wants_tools(state):
            return  # an interrupted or timed-out attempt fails in `_attempt`
        runnable = self._plan_tools(state)
        if runnable:
            await self._run_tools(runnable)

    async def _open_and_consume(
        self, call: Call, state: StepState, opened_at: float, guard: _StartupGuard
    ) -> None:
        stream = await self.model.stream(call)

        def on_first_part() -> None:
            guard.disarm()
            self.ttft.observe(self.clock.now() - opened_at)

        try:
            await consume_stream(
                stream,
                state,
                self.o.publish_message_part,
                self.clock.now,
                self.clock.utcnow,
                on_first_part,
            )
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _interruptible(self, awaitable: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        """Await `awaitable` as a child the run's `Interrupt` can cancel."""
        if self.interrupt.is_set:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise _Interrupted
        child = asyncio.ensure_future(awaitable)
        self.interrupt._target = child
        try:
            return await child
        except asyncio.CancelledError:
            if self.interrupt.is_set and child.cancelled() and not _cancelling():
                raise _Interrupted from None
            raise
        finally:
            self.interrupt._target = None

    # --- tools ---------------------------------------------------------------------

    def _plan_tools(self, state: StepState) -> list[tuple[int, ToolCallPart]]:
        """Size `self.results` for the step's local calls; return the ones to run here.

        A batch breaking the exclusive-tool policy runs nothing: its error results are
        filled in at once. Dynamic tools are left for the client (`_finish_tools`).
        """
        local = [c for c in state.tool_calls if not c.provider_executed]
        self.results = [None] * len(local)
        exclusive = self.o.exclusive_tool_names
        policy_errors = (
            exclusive_policy_errors(local, frozenset(exclusive))
            if exclusive and len(local) > 1
            else None
        )
        if policy_errors is not None:
            now = self.clock.utcnow()
            for index, (call, message) in enumerate(zip(local, policy_errors, strict=True)):
                self.results[index] = self._result(call, ToolResultError(message), "", now)
            return []
        dynamic = self.o.dynamic_tool_names
        return [(i, c) for i, c in enumerate(local) if c.tool_name not in dynamic]

    def _finish_tools(self, state: StepState) -> list[ToolCallPart]:
        """Publish and append the results of the tools the attempt ran; return the calls
        left for the client (dynamic tools)."""
        local = [c for c in state.tool_calls if not c.provider_executed]
        dynamic = [c for c, r in zip(local, self.results, strict=True) if r is None]
        results = [r for r in self.results if r is not None]
        for result in results:
            if result.created_at is not None:
                state.tool_result_created_at[result.tool_call_id] = result.created_at
            if self.o.publish_message_part is not None:
                self.o.publish_message_part(Role.TOOL, result)
        state.content.extend(results)
        return dynamic

    async def _run_tools(self, calls: list[tuple[int, ToolCallPart]]) -> None:
        if len(calls) == 1:
            await self._run_one_tool(*calls[0])
            return
        async with asyncio.TaskGroup() as group:
            for index, call in calls:
                group.create_task(self._run_one_tool(index, call))

    async def _run_one_tool(self, index: int, call: ToolCallPart) -> None:
        provider_tool = self.provider_runners.get(call.tool_name)
        tool = provider_tool.runner if provider_tool is not None else self.tools.get(call.tool_name)
        metadata, provider_metadata = "", None
        if tool is None:
            reason = self.o.unavailable_tools.get(call.tool_name)
            output: Any = ToolResultError(reason or f"Tool not found: {call.tool_name}")
        elif provider_tool is None and call.tool_name not in self.active:
            output = ToolResultError(f"Tool not active in this turn: {call.tool_name}")
        else:
            response = await run_tool(tool, call)
            output, metadata = response.to_output(), response.metadata
            callback = provider_tool.result_provider_metadata if provider_tool else None
            if callback is not None and not isinstance(output, ToolResultError):
                provider_metadata = callback(response)
        at = self.clock.utcnow()
        self.results[index] = self._result(call, output, metadata, at, provider_metadata)

    def _result(
        self,
        call: ToolCallPart,
        output: Any,
        metadata: str,
        at: datetime,
        provider_metadata: dict[str, Any] | None = None,
    ) -> ToolResultPart:
        result = ToolResultPart(
            tool_call_id=call.tool_call_id,
            tool_name=call.tool_name,
            output=output,
            client_metadata=metadata,
            created_at=at,
            provider_metadata=provider_metadata or {},
        )
        name = call.tool_name or "unknown"
        sizes = self.result_sizes.get(name)
        if sizes is None:
            family = self.metrics.tool_result_size_bytes
            sizes = self.result_sizes[name] = family.labels(self.provider, self.model.model, name)
        sizes.observe(tool_result_size(result))
        if isinstance(output, ToolResultError):
            self.metrics.record_tool_error(self.provider, self.model.model, name)
        return result

    def _stop_after_tool_succeeded(self, content: list[MessagePart]) -> bool:
        stop_after = self.o.stop_after_tools
        return bool(stop_after) and any(
            isinstance(p, ToolResultPart)
            and not p.provider_executed
            and p.tool_name in stop_after
            and not p.is_error
            for p in content
        )

    # --- persistence ---------------------------------------------------------------

    def _context_limit(self, state: StepState) -> int | None:
        limit = find_context_limit(state.provider_metadata) if state.provider_metadata else None
        if limit is None and self.o.context_limit_fallback > 0:
            return self.o.context_limit_fallback
        return limit

    async def _persist(self, step: PersistedStep) -> None:
        try:
            await self.persist(step)
        except ChatInterrupted:
            await self._persist_interrupted()
            raise
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise PersistStepError(f"persist step: {err}") from err

    async def _persist_interrupted(self) -> None:
        """Persist what the interrupted step had, shielded from cancellation.

        Every local tool call left without a result gets an error result saying it
        was interrupted.
        """
        state = self.state
        state.flush_open_blocks()
        done = {r.tool_call_id: r for r in self.results if r is not None}
        content: list[MessagePart] = [p for p in state.content if not isinstance(p, ToolResultPart)]
        content += [p for p in state.content if isinstance(p, ToolResultPart)]
        if self.persistable_content is not None:
            content = self.persistable_content(content)
        if not content:
            return
        has_result = {p.tool_call_id for p in content if isinstance(p, ToolResultPart)}
        for call in [p for p in content if isinstance(p, ToolCallPart)]:
            # A provider-executed call's result only the provider can give (web search
            # results carry its metadata): no synthetic result for it.
            if not call.tool_call_id or call.tool_call_id in has_result or call.provider_executed:
                continue
            result = done.get(call.tool_call_id)
            if result is None:
                result = ToolResultPart(
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    output=ToolResultError(INTERRUPTED_TOOL_RESULT),
                    created_at=self.clock.utcnow(),
                )
            state.tool_result_created_at.setdefault(
                call.tool_call_id, result.created_at or self.clock.utcnow()
            )
            content.append(result)
        step = PersistedStep(
            content=content,
            tool_call_created_at=state.tool_call_created_at,
            tool_result_created_at=state.tool_result_created_at,
        )
        try:
            await asyncio.shield(self.persist(step))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if self.o.on_interrupted_persist_error is not None:
                self.o.on_interrupted_persist_error(err)


def _wants_tools(state: StepState) -> bool:
    """Whether the step ended asking for tools the loop (or the client) must run."""
    return state.finish_reason == FinishReason.TOOL_CALLS and any(
        not c.provider_executed for c in state.tool_calls
    )


def _response_id(metadata: dict[str, Any] | None) -> str:
    """The provider's stored response id (finish metadata `{provider: {"response_id"}}`)."""
    for value in (metadata or {}).values():
        if isinstance(value, dict) and isinstance(value.get("response_id"), str):
            return str(value["response_id"])
    return ""


@functools.cache
def _nop_metrics() -> Metrics:
    # Building a NopMetrics (a registry and every family) costs more than a whole tool
    # step, so runs given no metrics share one; nobody can read it, so nothing changes.
    return NopMetrics()


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0
