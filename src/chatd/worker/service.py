"""The worker of one replica: acquisition, heartbeats, runners, deadlines, shutdown.

It claims pending (and stale) chats up to its capacity on every tick and on every
wake-up, starts one `ChatRunner` per claimed chat, renews their leases, stops a
runner whose lease it could not renew, sweeps expired requires_action deadlines,
and keeps unowned chats' streams up to date (spec §4). In-process wake-ups come
from the store's commit listener; other replicas' commits arrive as notifications
(PostgreSQL LISTEN/NOTIFY), repaired by a periodic sync of
the owned chats and by the relay's poll of the log for watched chats (`peers.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chatd.config import Settings
from chatd.loop import Metrics, Model, Tool
from chatd.store import Acquisition, Capacity, Chat, ChatStatus, ModelConfig, Store, StoreError
from chatd.stream.hub import StreamHub
from chatd.stream.relay import Relay
from chatd.stream.watch import ChatListWatch
from chatd.tools import BuiltinToolsConfig, Workspaces, builtin_tools, sandbox_for_settings
from chatd.worker.admission import Admission
from chatd.worker.peers import PeerCommits
from chatd.worker.runner import ChatRunner, workspace_key
from chatd.worker.titles import TitleWriter
from chatd.worker.unowned import UnownedSync

__all__ = ["BuildModel", "Worker"]

log = logging.getLogger("chatd.worker")

# Housekeeping every 30 s, as upstream's heartbeat cleanup; the log janitor and the
# release of idle hub rings every other round.
HOUSEKEEPING_INTERVAL = 30.0
IDLE_RING_SECONDS = 60.0
# SQLite: the flushes' append-only tail is folded into the log this often (seconds).
TAIL_FOLD_INTERVAL = 1.0
BuildModel = Callable[[ModelConfig], Awaitable[Model]]


class Worker:
    def __init__(
        self,
        store: Store,
        hub: StreamHub,
        settings: Settings,
        metrics: Metrics,
        build_model: BuildModel,
    ) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self.metrics = metrics
        self._build_model = build_model
        self.worker_id = str(uuid.uuid4())
        self.runners: dict[str, ChatRunner] = {}
        self.list_watch = ChatListWatch()
        self.relay = Relay(store, hub, self.runners.__contains__, settings.sync_interval)
        self.workspaces = Workspaces(
            settings.effective_workspace_root, sandbox=sandbox_for_settings(settings)
        )
        # Extra server-side tools for every chat (an embedding application's own tools).
        self.server_tools: Callable[[Chat], list[Tool]] | None = None
        self.wake = asyncio.Event()
        # Set by an owner with a full batch of events: flush now, not at the tick.
        self.flush_wake = asyncio.Event()
        self.draining = False
        self.admission = Admission(settings)
        self.capacity = Capacity(
            chats=settings.max_running_chats, agents=settings.max_running_agents
        )
        metrics.capacity_limit.labels("chat").set(self.capacity.chats)
        metrics.capacity_limit.labels("agent").set(self.capacity.agents)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.unowned = UnownedSync(store, hub, self.wake, self._spawn)
        # Pending chats the next acquisition should claim before anyone syncs them.
        self._claim_first: set[str] = set()
        self.titles = TitleWriter(self)
        # Other replicas' commits (PostgreSQL NOTIFY): `connect_replicas` wires them here.
        self.peers = PeerCommits(
            store=store,
            hub=hub,
            relay=self.relay,
            list_watch=self.list_watch,
            runners=self.runners,
            wake=self.wake,
            spawn=self._spawn,
            chat_deleted=self.chat_deleted,
        )
        self._last_renewal = time.monotonic()
        # True when other processes commit to the same database (PostgreSQL with a
        # listener): then owned chats are also re-read every sync interval.
        self.shared_database = False
        # Generate a title for every new chat with its model (spec §4.10).
        self.write_titles = settings.generate_titles

    # --- hooks for runners --------------------------------------------------------

    async def model_config(self, chat: Chat) -> ModelConfig:
        """The chat's model config; the deployment default when it has none (or it is gone)."""
        return await self.store.get_model_config(chat.model_config_id, or_default=True)

    async def build_model(self, config: ModelConfig) -> Model:
        return await self._build_model(config)

    async def resolve_model(self, chat: Chat) -> Model:
        return await self.build_model(await self.model_config(chat))

    def builtin_tools(self, chat: Chat) -> list[Tool]:
        """The built-in tools, confined to the chat's workspace (kept while we run it)."""
        return builtin_tools(
            self.workspaces.get(workspace_key(chat)),
            BuiltinToolsConfig.from_settings(self.settings),
        )

    def chat_deleted(self, chat_id: str) -> None:
        """A chat is gone: stop every process of its sandbox and remove its workspace."""
        self._spawn(self.workspaces.release(chat_id, remove=True))

    def request_sync(self, chat_id: str) -> None:
        """Bring an unowned chat's stream up to date, in the background."""
        self.unowned.request(chat_id)

    @property
    def loop_lag(self) -> float:
        return self.admission.loop_lag

    @property
    def loop_busy(self) -> float:
        return self.admission.loop_busy

    # --- the store's commit listener ---------------------------------------------

    def on_commit(self, chat: Chat) -> None:
        self.list_watch.publish(chat)
        if chat.snapshot_version == 1 and chat.title_source == "default" and self.write_titles:
            self._spawn(self.titles.write(chat))
        if chat.status == ChatStatus.PENDING:
            self.wake.set()
        runner = self.runners.get(chat.id)
        if runner is not None and not runner.releasing:
            runner.on_snapshot(chat)
        elif chat.runner_id is None:
            if chat.status == ChatStatus.PENDING and self._may_claim():
                # The acquisition just woken will most likely claim it, and its runner
                # derives the chat's events itself: sync only if it was not claimed.
                self._claim_first.add(chat.id)
            else:
                self.unowned.request(chat.id, pending=chat.status == ChatStatus.PENDING)

    def _may_claim(self) -> bool:
        running = len(self.runners)
        return (
            not self.draining
            and running < self.settings.max_concurrent_chats
            and self.admission.admitting(running)
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.store.add_listener(self.on_commit)
        self.store.add_delete_listener(lambda chat: self.chat_deleted(chat.id))
        self._tasks = [
            asyncio.create_task(self._acquire_loop(), name="chatd-acquire"),
            asyncio.create_task(self._heartbeat_loop(), name="chatd-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="chatd-flush"),
            asyncio.create_task(self._sync_loop(), name="chatd-sync"),
            asyncio.create_task(self._housekeeping_loop(), name="chatd-housekeeping"),
            asyncio.create_task(self._lag_loop(), name="chatd-loop-lag"),
        ]

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown (spec §4.8): stop claiming, let turns end, hand the rest back."""
        self.draining = True
        for task in self._tasks:
            task.cancel()
        grace = self.settings.shutdown_grace if grace is None else grace
        running = [r.task for r in self.runners.values() if r.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace)
        for runner in list(self.runners.values()):
            if runner.task is not None and not runner.task.done():
                runner.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner.task
                with contextlib.suppress(StoreError):
                    await self.store.abandon(runner.fence)
        for task in list(self._background):
            task.cancel()
        await self.relay.close()
        await self.workspaces.aclose()

    async def _acquire_loop(self) -> None:
        interval = self.settings.acquire_interval
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not self.draining:
            # Cleared before the claim, so a wake-up that arrives during it is not lost.
            self.wake.clear()
            deferred, self._claim_first = self._claim_first, set()
            try:
                await self.acquire_once()
                if loop.time() >= next_sweep:  # once a tick, not on every wake-up
                    next_sweep = loop.time() + interval
                    await self.store.expire_requires_action()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("acquisition failed; retrying next tick")
            finally:
                for chat_id in deferred:
                    if chat_id not in self.runners:  # not ours: its watchers see it pending
                        self.unowned.request(chat_id, pending=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.wake.wait()

    async def _lag_loop(self) -> None:
        await self.admission.sample(lambda: not self.draining)

    def admitting(self) -> bool:
        """Whether the replica takes new chats: not while its event loop is overloaded."""
        return self.admission.admitting(len(self.runners))

    async def acquire_once(self) -> int:
        free = self.settings.max_concurrent_chats - len(self.runners)
        if self.draining:
            return 0
        limit = self.admission.limit(free, len(self.runners))
        if limit <= 0:
            return 0
        acquired = await self.store.acquire_chats(self.worker_id, limit, self.capacity)
        self._record_capacity(acquired)
        leases = acquired.leases
        self.admission.claimed(len(leases))
        for lease in leases:
            runner = ChatRunner(self, lease)
            self.runners[lease.chat.id] = runner
            runner.task = asyncio.create_task(self._run(runner), name=f"chat-{lease.chat.id}")
        return len(leases)

    def _record_capacity(self, acquired: Acquisition) -> None:
        m = self.metrics
        for kind, seconds in acquired.waited:
            m.capacity_wait_seconds.labels(kind).observe(seconds)
        for kind, running in acquired.running.items():
            m.capacity_running.labels(kind).set(running)
        for kind, queued in acquired.queued.items():
            m.capacity_queued.labels(kind).set(queued)

    async def _run(self, runner: ChatRunner) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            # Lost lease or shutdown: the runner stops without writing; the chat is
            # re-acquired (by us or another replica) after its lease expires. Its
            # sandbox's processes end with it (shutdown closes every workspace).
            log.info("chat %s: runner cancelled", runner.chat_id)
            if not self.draining and runner.chat.parent_id is None:  # a child's is its parent's
                self._spawn(self.workspaces.release(runner.chat_id))
        except Exception:
            log.exception("chat %s: runner failed", runner.chat_id)
        finally:
            if self.runners.get(runner.chat_id) is runner:
                del self.runners[runner.chat_id]
            if not self.draining:
                self.wake.set()  # a slot is free, and the chat may be pending again

    async def _flush_loop(self) -> None:
        """Every flush interval (or once an owner has a full batch), all owned chats'
        new events in one transaction (§5.5)."""
        interval = self.settings.stream_flush_interval
        loop = asyncio.get_running_loop()
        folded_at = loop.time()
        while not self.draining:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.flush_wake.wait()
            self.flush_wake.clear()
            try:
                await self.flush_events()
                if loop.time() - folded_at >= TAIL_FOLD_INTERVAL:
                    folded_at = loop.time()
                    await self.store.fold_event_tail()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event flush failed; retrying next interval")

    async def flush_events(self) -> None:
        taken = []
        for runner in list(self.runners.values()):
            batch = runner.stream.take_for_batch()
            if batch is not None:
                taken.append((runner, *batch))
        if not taken:
            return
        ok = False
        stale: set[str] = set()
        try:
            stale = await self.store.append_events_batch(
                [(r.fence, events, state) for r, events, state in taken]
            )
            ok = True
        finally:
            for runner, events, state in taken:
                runner.stream.batch_done(events, state, ok)
                if runner.chat_id in stale and runner.task is not None and not runner.releasing:
                    runner.task.cancel()  # it lost its lease

    async def _sync_loop(self) -> None:
        """Every sync interval: owned chats' snapshots, and the relay's repair poll."""
        interval = self.settings.sync_interval
        while not self.draining:
            await asyncio.sleep(interval)
            self.relay.poll()
            if not self.shared_database:
                continue  # one process: the in-process commit listener misses nothing
            try:
                await self.peers.sync_owned()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("sync of owned chats failed (%s); retrying next interval", err)

    async def _housekeeping_loop(self) -> None:
        """Every 30 s: expired heartbeat rows and waits on agents no commit answered;
        every 60 s: the stream log beyond its retention and idle hub rings (§4.1, §5.5)."""
        last_prune: datetime | None = None
        rounds = 0
        while not self.draining:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            rounds += 1
            try:
                await self.store.delete_expired_heartbeats()
                await self.store.resolve_stalled_waits()
                if rounds % 2 == 0:
                    started = datetime.now(UTC)
                    await self.store.prune_events(
                        self.settings.stream_retain_events, changed_since=last_prune
                    )
                    last_prune = started - timedelta(seconds=HOUSEKEEPING_INTERVAL)
                    self.hub.release_idle(IDLE_RING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("housekeeping failed (%s); retrying next round", err)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self.draining:
            await asyncio.sleep(interval)
            runners = dict(self.runners)
            if not runners:
                self._last_renewal = time.monotonic()
                continue
            try:
                renewed = await self.store.renew_leases(
                    self.worker_id, [r.fence.runner_id for r in runners.values()]
                )
            except Exception as err:
                log.warning("lease renewal failed (%s)", err)
                self._fence_if_partitioned()
                continue
            self._last_renewal = time.monotonic()
            for runner in runners.values():
                if (
                    runner.fence.runner_id not in renewed
                    and runner.task is not None
                    and not runner.releasing  # it gave the lease up itself
                    and self.runners.get(runner.chat_id) is runner
                ):
                    log.warning("chat %s: lease not renewed, stopping its runner", runner.chat_id)
                    runner.task.cancel()

    def _fence_if_partitioned(self) -> None:
        """Self-fencing (spec §4.5): after `lease_ttl - heartbeat_interval` without one
        successful renewal, another replica may own our chats: stop every runner."""
        silent = time.monotonic() - self._last_renewal
        if silent < self.settings.lease_ttl - self.settings.heartbeat_interval:
            return
        stopping = [r for r in self.runners.values() if r.task is not None and not r.releasing]
        if stopping:
            log.warning(
                "no lease renewed for %.0f s: assuming our %d leases are lost, stopping runners",
                silent,
                len(stopping),
            )
        for runner in stopping:
            if runner.task is not None:
                runner.task.cancel()
