"""The runner: one task per owned chat, driving one turn through `chatd.loop.run`.

It turns the loop's callbacks into store transitions (every step committed with
the runner's fence) and stream events, and the loop's outcome into the transition
that ends the turn (spec §4.4). A runner that lost its lease (`StaleFence`) stops
without writing anything; the chat is someone else's now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from chatd.core.agents import WAIT_AGENT
from chatd.errors import ClassifiedError, ClassifiedException, ErrorKind
from chatd.loop import (
    ChatInterrupted,
    Interrupt,
    Model,
    PersistedStep,
    PersistStepError,
    ProviderTool,
    RunOptions,
    RunOutcome,
    StreamError,
    Tool,
    ToolDefinition,
    run,
)
from chatd.loop.compaction import (
    CompactionError,
    CompactionOptions,
    CompactionResult,
    compact,
    estimate_tokens,
)
from chatd.providers import provider_tool_definitions
from chatd.store import (
    PLAN_MODE,
    Chat,
    ChatIsInterrupting,
    ChatStatus,
    Fence,
    Lease,
    ModelConfig,
    StaleFence,
    new_id,
)
from chatd.stream.wire import live_part
from chatd.tools import (
    ASK_USER_QUESTION,
    ToolConfig,
    ToolConfigError,
    ToolSelection,
    allowed_builtin_tools,
    child_unavailable_tools,
    effective_tool_policy,
    plan_mode_selection,
    select_tools,
    with_agent_tools,
    with_question_tool,
)
from chatd.types import (
    MessagePart,
    Role,
    ToolCallPart,
)
from chatd.worker.agents import ChildAgents
from chatd.worker.attempts import AttemptRecorder
from chatd.worker.cost import cost_micros
from chatd.worker.instructions import Instructions, gather_instructions
from chatd.worker.mcp_servers import connect_mcp_servers
from chatd.worker.owner_stream import OwnerStream

if TYPE_CHECKING:
    from chatd.worker.context import RunnerContext

__all__ = ["ChatRunner"]

log = logging.getLogger("chatd.worker")


class ChatRunner:
    def __init__(self, worker: RunnerContext, lease: Lease) -> None:
        self.worker = worker
        self.store = worker.store
        self.chat = lease.chat
        self.chat_id = lease.chat.id
        self.fence = Fence(lease.chat.id, lease.runner_id, lease.lease_epoch)
        self.stream = OwnerStream(
            worker.store,
            worker.hub,
            self.fence,
            lease.first_seq,
            lease.chat,
            flush_soon=worker.flush_wake.set,
        )
        self.interrupt = Interrupt()
        self.partial: PersistedStep | None = None
        self.partial_step_id = new_id()
        self.releasing = False
        self._claimed_attempt = True
        self.task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.model_provider = ""
        self.model_name = ""
        # The model config's prices (None: unpriced) and the run's instructions.
        self.pricing: dict[str, str] | None = None
        self.instructions = Instructions("", ())
        # The run's MCP connections, opened before its first step, closed when it ends.
        self._mcp: contextlib.AsyncExitStack | None = None

    # --- notifications from the worker ---------------------------------------------

    def on_snapshot(self, chat: Chat) -> None:
        """A transition on this chat committed (by anyone); react to what changed."""
        if self.releasing or chat.snapshot_version < self.chat.snapshot_version:
            return  # an older snapshot than one already seen (reads race with commits)
        if chat.runner_id != self.fence.runner_id:
            if self.task is not None:
                self.task.cancel()  # the lease is gone: stop, write nothing
            return
        self.chat = chat
        if chat.status == ChatStatus.INTERRUPTING:
            self.interrupt.interrupt()
        self._spawn(self._derive(chat))

    async def _derive(self, chat: Chat) -> None:
        with contextlib.suppress(StaleFence):
            await self.stream.derive(chat)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the turn -----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.stream.derive(self.chat)
            if self.chat.status == ChatStatus.INTERRUPTING:
                await self._end(partial(self.store.finish_interruption, self.fence, None))
                return
            await self._generate()
        except StaleFence:
            log.info("chat %s: lease lost, runner stops", self.chat_id)
        except ChatIsInterrupting:
            # An interrupt committed between the run's end and the transition closing it
            # (everything the run made is committed): honour it now, not a lease TTL later.
            await self._end(partial(self.store.finish_interruption, self.fence, None))
        except Exception:
            log.exception("chat %s: the turn failed inside chatd; it ends in error", self.chat_id)
            await self._fail_internally()
        finally:
            for task in list(self._background):
                task.cancel()
            if self._mcp is not None:
                await self._mcp.aclose()  # after the releasing transition: no one waits

    async def _fail_internally(self) -> None:
        """End the turn in `error` (kind `internal`) after a failure of chatd's own.

        Left running, the chat would be re-acquired every lease TTL and fail the same
        way for ever. When even this transition fails (the database is gone), the
        lease expires and the chat is retried later, which is right for an outage.
        """
        error = ClassifiedError(
            kind=ErrorKind.INTERNAL,
            detail=f"See the server log for chat {self.chat_id}.",
        ).normalized()
        try:
            await self._end(partial(self.store.finish_error, self.fence, error))
        except StaleFence:
            log.info("chat %s: lease lost, runner stops", self.chat_id)
        except ChatIsInterrupting:
            # An interrupt committed between the run's end and the transition closing it
            # (everything the run made is committed): honour it now, not a lease TTL later.
            await self._end(partial(self.store.finish_interruption, self.fence, None))
        except Exception:
            log.exception("chat %s: recording the failure failed too", self.chat_id)

    async def record_attempt(self) -> None:
        if self._claimed_attempt:
            # The acquisition counted the first attempt in the claim's transaction.
            self._claimed_attempt = False
            return
        try:
            chat = await self.store.record_generation_attempt(self.fence)
        except ChatIsInterrupting:
            # The loop ends through its interrupted path on its own exception.
            self.interrupt.interrupt()
            raise ChatInterrupted() from None
        self.chat = chat
        await self.stream.derive(chat)

    async def _persist_step(self, step: PersistedStep) -> None:
        if self.interrupt.is_set:
            # The loop's interrupted-persist path: finish_interruption commits it.
            self.partial = step
            return
        await self.stream.wait_inflight()
        async with self.stream.write_lock:
            events = self.stream.take_pending()
            cost = cost_micros(step.usage, self.pricing)
            try:
                chat = await self.store.commit_step(
                    self.fence,
                    new_id(),
                    step,
                    provider=self.model_provider,
                    model=self.model_name,
                    model_config_id=self.chat.model_config_id,
                    cost_micros=cost,
                    instructions=self.instructions.sources,
                    events=events,
                )
            except ChatIsInterrupting:
                self.stream.restore_pending(events)
                self.interrupt.interrupt()
                raise ChatInterrupted() from None
            except BaseException:
                self.stream.restore_pending(events)
                raise
        self._count_cost(cost)
        self.chat = chat
        await self.stream.derive(chat)

    def _count_cost(self, cost: int | None) -> None:
        if cost:
            self.worker.metrics.record_cost(self.model_provider, self.model_name, cost)

    def _publish(self, role: Role, part: MessagePart) -> None:
        self.stream.emit(
            "message_part",
            {
                "role": role,  # a StrEnum: encoded as its value
                "part": live_part(part),
                "history_version": self.chat.history_version,
                "generation_attempt": self.chat.generation_attempt,
            },
        )

    def _on_retry(
        self, attempt: int, error: BaseException, classified: ClassifiedError, delay: float
    ) -> None:
        retrying_at = datetime.now(UTC) + timedelta(seconds=delay)
        payload = {
            "attempt": attempt,
            "delay_ms": int(delay * 1000),
            "retrying_at": retrying_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "error": classified.message,
            "kind": classified.kind,
            "provider": classified.provider,
            "status_code": classified.status_code or None,
        }
        self._spawn(self._record_retry(payload))

    async def _record_retry(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(StaleFence, ChatIsInterrupting):
            chat = await self.store.record_retry_state(self.fence, payload)
            await self.stream.derive(chat)

    async def _generate(self) -> None:
        chat = self.chat
        history = await self.store.load_history(self.chat_id)
        if _ends_with_pending_dynamic_calls(history.messages, chat):
            await self._end(partial(self.store.enter_requires_action, self.fence))
            return
        config = await self.worker.model_config(chat)
        try:
            model = await self.worker.build_model(config)
        except ClassifiedException as err:
            await self._end(partial(self.store.finish_error, self.fence, err.classified))
            return
        self.model_provider, self.model_name = model.provider, model.model
        self.pricing = config.pricing
        if chat.compaction_requested_at is not None:
            await self._compact_now(model, history.messages)
            return
        try:
            tool_config = ToolConfig.from_json(chat.tool_config or None)
        except ToolConfigError as err:
            error = ClassifiedError(kind="config", message=f"The chat's tools are invalid: {err}")
            await self._end(partial(self.store.finish_error, self.fence, error))
            return
        # Built-in tools act on the server's files and processes: only when asked for,
        # and only those the owner may enable now (an admin may have narrowed it since).
        builtin: list[Tool] = []
        owner, deployment = await self.store.instructions_for(chat.owner_id)
        if "builtin" in chat.tool_config:
            allowed = allowed_builtin_tools(
                effective_tool_policy(
                    owner.tool_policy,
                    is_admin=owner.is_admin,
                    default=self.worker.settings.builtin_tools,
                )
            )
            builtin = [tool for tool in self.worker.builtin_tools(chat) if tool.name in allowed]
        workspace = self.worker.workspaces.get(workspace_key(chat)) if builtin else None
        self.instructions = await gather_instructions(chat, owner, deployment, workspace)
        extra = self.worker.server_tools(chat) if self.worker.server_tools is not None else []
        planning = chat.mode == PLAN_MODE
        # opt-in: other chats never read the mcp_servers table; plan mode offers no MCP tool.
        if tool_config.mcp_servers and not planning:
            extra = [*extra, *await self._connect_mcp(tool_config.mcp_servers)]
        selection = _mode_selection(
            select_tools(tool_config, builtin=builtin, mcp=extra), planning=planning, chat=chat
        )
        if selection.builtin_tool_names and not planning and chat.parent_id is None:
            selection = with_agent_tools(selection, ChildAgents(self.store, chat))
        compaction = self._compaction_options(config)
        options = RunOptions(
            model=AttemptRecorder(model, self.record_attempt),
            messages=self.instructions.prepend(history.messages),
            max_steps=self.worker.settings.max_steps,
            persist_step=self._persist_step,
            publish_message_part=self._publish,
            on_retry=self._on_retry,
            interrupt=self.interrupt,
            metrics=self.worker.metrics,
            compaction=compaction,
            reload_messages=self._reload,
            provider_tools=_provider_tools(tool_config, config),
            unavailable_tools=child_unavailable_tools() if chat.parent_id else {},
        )
        options = selection.apply(options)
        gauge = self.worker.metrics.chats.labels("streaming")
        gauge.inc()
        try:
            outcome = await run(options)
        except ChatIsInterrupting:  # from a store call of ours the loop did not make
            outcome = RunOutcome.INTERRUPTED
        except StreamError as err:
            await self._end(partial(self.store.finish_error, self.fence, err.classified))
            return
        except PersistStepError as err:
            if isinstance(err.__cause__, StaleFence):
                raise err.__cause__ from None
            raise
        finally:
            gauge.dec()
        log.debug("chat %s: the run ended: %s", self.chat_id, outcome)
        cost = None
        match outcome:
            case RunOutcome.INTERRUPTED:
                cost = cost_micros(self.partial.usage, self.pricing) if self.partial else None
                transition = partial(
                    self.store.finish_interruption,
                    self.fence,
                    self.partial,
                    step_id=self.partial_step_id,
                    provider=self.model_provider,
                    model=self.model_name,
                    cost_micros=cost,
                    instructions=self.instructions.sources,
                )
            case RunOutcome.REQUIRES_ACTION:
                transition = partial(self.store.enter_requires_action, self.fence)
            case _:
                transition = partial(self.store.finish_turn, self.fence)
        await self._end(transition)
        self._count_cost(cost)

    async def _connect_mcp(self, slugs: Sequence[str]) -> list[Tool]:
        self._mcp = contextlib.AsyncExitStack()
        cwd = str(self.worker.workspaces.get(workspace_key(self.chat)).root)
        return await connect_mcp_servers(self.store, self.chat_id, slugs, self._mcp, cwd=cwd)

    def _compaction_options(self, config: ModelConfig) -> CompactionOptions:
        """The model config's threshold (100 disables) and context-limit override."""
        return CompactionOptions(
            threshold_percent=config.compaction_threshold_percent,
            context_limit=config.context_limit or 0,
            persist=self._persist_compaction,
        )

    async def _compact_now(self, model: Model, messages: list[Any]) -> None:
        """The user asked for a compaction (`POST …/compact`): summarise, then end the turn."""
        options = CompactionOptions()
        limit = getattr(model, "context_limit", None) or 0
        try:
            result = await compact(
                model,
                messages,
                options,
                context_tokens=estimate_tokens(messages),
                context_limit=limit if isinstance(limit, int) else 0,
                source="manual",
            )
        except (CompactionError, TimeoutError) as err:
            self.worker.metrics.record_compaction(self.model_provider, self.model_name, False, err)
            error = ClassifiedError(
                kind="generic",
                provider=self.model_provider,
                message="The compaction failed; the history is unchanged. Try again later.",
                detail=str(err),
            )
            await self._end(partial(self.store.finish_error, self.fence, error))
            return
        self.worker.metrics.record_compaction(self.model_provider, self.model_name, True, None)
        await self._persist_compaction(result)
        await self._end(partial(self.store.finish_turn, self.fence))

    async def _reload(self) -> list[Any]:
        return self.instructions.prepend((await self.store.load_history(self.chat_id)).messages)

    async def _persist_compaction(self, result: CompactionResult) -> None:
        chat = await self.store.commit_compaction(
            self.fence, result.system_summary, summary=result.summary_report
        )
        await self.stream.derive(chat)

    async def _end(self, transition: Callable[[], Awaitable[Chat]]) -> None:
        """Flush this owner's events, apply the releasing transition, hand over the stream.

        The transition is passed uncalled, so a flush that fails (or a cancel) leaves
        no coroutine behind that was never awaited.
        """
        await self.stream.flush()
        self.releasing = True
        try:
            chat = await transition()
        except BaseException:
            self.releasing = False
            raise
        self.worker.request_sync(self.chat_id)
        error = chat.last_error or {}
        log.info(
            "turn ended chat=%s status=%s seq=%d model=%s:%s error_kind=%s",
            self.chat_id,
            chat.status,
            self.stream.next_seq - 1,
            self.model_provider,
            self.model_name,
            error.get("kind", "") if chat.status == ChatStatus.ERROR else "",
        )


def workspace_key(chat: Chat) -> str:
    """Whose workspace the chat works in: a child shares its parent's."""
    return chat.parent_id or chat.id


def _mode_selection(selection: ToolSelection, *, planning: bool, chat: Chat) -> ToolSelection:
    """Plan mode's tools; otherwise the chat's, with `ask_user_question` when the run has
    built-in tools (a chat without them, such as an OpenAI-compatible API one, is offered
    only the tools its client named). A child asks no one: no user watches it."""
    if planning:
        return plan_mode_selection(selection)
    if selection.builtin_tool_names and chat.parent_id is None:
        return with_question_tool(selection)
    return selection


def _ends_with_pending_dynamic_calls(messages: list[Any], chat: Chat) -> bool:
    """The previous owner committed a dynamic-tool step but died before requires_action."""
    try:
        names = {spec.name for spec in ToolConfig.from_json(chat.tool_config or None).dynamic}
    except ToolConfigError:
        return False
    names.update((ASK_USER_QUESTION, WAIT_AGENT))
    if not messages:
        return False
    last = messages[-1]
    if last.role != Role.ASSISTANT:
        return False
    return any(isinstance(p, ToolCallPart) and p.tool_name in names for p in last.content)


def _provider_tools(
    tool_config: ToolConfig, config: ModelConfig
) -> list[ProviderTool | ToolDefinition]:
    """The provider tools the chat asks for that its model config still allows (an
    admin may have narrowed it since), as the config's provider defines them."""
    allowed = set(config.provider_tools or ())
    wanted = [name for name in tool_config.provider if name in allowed]
    return [*provider_tool_definitions(config.provider, wanted)]
