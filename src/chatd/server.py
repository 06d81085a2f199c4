"""`chatd serve`: one replica — the store, the hub, the worker and the HTTP app in one process.

Start-up migrates the database, makes sure a default model (the offline scripted
one) and an admin token exist, then serves until SIGINT/SIGTERM. Shutdown stops
claiming chats, closes the streams, gives running turns the grace period and
hands the rest back (spec §4.8).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Generator
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry

from chatd.api import AppState, create_app
from chatd.config import Settings
from chatd.errors import ClassifiedError, ErrorKind, with_classification
from chatd.loop import Metrics, Model
from chatd.providers import ModelConfig as ProviderConfig
from chatd.providers import resolve
from chatd.providers.scripted import ScriptedModel
from chatd.store import (
    Chat,
    InvalidRequest,
    NotFound,
    PgPubSub,
    Store,
    StoreConfig,
    UnreadableSecret,
)
from chatd.store import ModelConfig as StoredModelConfig
from chatd.stream import StreamHub
from chatd.tools import Sandbox, SandboxUnavailable, sandbox_for_settings
from chatd.worker.service import Worker

__all__ = [
    "ADMIN_TOKEN_FILE",
    "build",
    "ensure_admin_token",
    "model_for_config",
    "resolve_model",
    "serve",
]

log = logging.getLogger("chatd")

ADMIN_TOKEN_FILE = "admin.token"
# Seconds between streamed words of the built-in scripted model, so `make run` streams
# visibly (the scripted provider's own default is instant).
SCRIPTED_DEMO_DELAY = 0.03


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        lease_ttl=settings.lease_ttl,
        requires_action_timeout=settings.requires_action_timeout,
        max_queued_messages=settings.max_queued_messages,
    )


async def ensure_default_model(store: Store) -> None:
    """A fresh deployment chats with the offline scripted model until an admin adds one."""
    try:
        default = await store.get_model_config(None)
    except NotFound:
        await store.create_model_config(
            "scripted",
            "scripted",
            "default",
            options={"delta_delay": SCRIPTED_DEMO_DELAY},
            context_limit=32_000,
            is_default=True,
        )
        return
    if default.provider == "scripted" and not default.options:
        # The seeded offline model streams word by word, so a first chat visibly streams.
        await store.update_model_config(default.id, options={"delta_delay": SCRIPTED_DEMO_DELAY})


async def warn_unreadable_keys(store: Store) -> None:
    """One warning per stored provider key this server's secret key cannot decrypt.

    Chats on those keys' model configs end in `missing_key` until an admin stores the
    key again; saying so at start beats finding out from a user's failed turn.
    """
    for key in await store.unreadable_provider_keys():
        log.warning(
            "provider key %r (provider %s, id %s) cannot be decrypted with this secret key "
            "(CHATD_SECRET_KEY or secret.key changed); store it again",
            key.name,
            key.provider,
            key.id,
        )


async def ensure_admin_token(store: Store, settings: Settings) -> str | None:
    """On the first start, create user `admin` and write its token (0600) to the data dir."""
    with contextlib.suppress(NotFound):
        await store.get_user_by_name("admin")
        return None  # not the first start
    try:
        user = await store.create_user("admin", is_admin=True)
    except InvalidRequest:
        return None  # another replica starting at the same moment made it
    token, _ = await store.create_api_token(user.id, name="first start")
    path = settings.data_dir / ADMIN_TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


async def resolve_model(store: Store, chat: Chat) -> Model:
    """The chat's model from its config (or the deployment default).

    A stored provider key is decrypted here and handed to the provider only; with
    a key reference that no longer resolves, the first call fails as `missing_key`
    instead of falling back to the server's environment.
    """
    config = await store.get_model_config(chat.model_config_id, or_default=True)
    return await model_for_config(store, config)


async def model_for_config(store: Store, config: StoredModelConfig) -> Model:
    """Build the model a stored config describes (no network I/O).

    Every failure is a `ClassifiedException`, so a turn on a broken config ends in
    `error` at once: options or settings the provider refuses are `config` (naming
    the config and the field), a stored key this server's secret key cannot decrypt
    is `missing_key`. A key reference that no longer exists fails the first call as
    `missing_key` instead of falling back to the server's environment.
    """
    api_key = ""
    if config.provider_key_id:
        try:
            api_key = await store.reveal_provider_key(config.provider_key_id)
        except NotFound:
            api_key = ""
        except UnreadableSecret as err:
            raise with_classification(
                err,
                ClassifiedError(
                    kind=ErrorKind.MISSING_KEY,
                    provider=config.provider,
                    message=(
                        f"The provider key of model config {config.name!r} cannot be "
                        "decrypted: the server's secret key changed. An admin must store "
                        "the key again."
                    ),
                    detail=str(err),
                ),
            ) from err
    try:
        return resolve(
            ProviderConfig(
                provider=config.provider,
                model=config.model,
                base_url=config.base_url or "",
                api_key=api_key,
                key_from_env=not config.provider_key_id,
                context_limit=config.context_limit or 0,
                provider_options=config.options,
            )
        )
    except (ValueError, TypeError) as err:
        raise with_classification(
            err,
            ClassifiedError(
                kind=ErrorKind.CONFIG,
                provider=config.provider,
                message=f"The model config {config.name!r} cannot be used: {err}. "
                "An admin must fix it.",
            ),
        ) from err


class Replica:
    """Everything one `chatd serve` process runs."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.hub = StreamHub(buffer_events=settings.stream_buffer_events, metrics=self.metrics)
        self.worker = Worker(
            store,
            self.hub,
            settings,
            self.metrics,
            self.build_model,
        )
        self.state = AppState(
            store=store,
            hub=self.hub,
            registry=self.registry,
            metrics=self.metrics,
            sse_keepalive=settings.sse_keepalive,
            sse_write_deadline=settings.sse_write_deadline,
            builtin_tools=settings.builtin_tools,
            list_watch=self.worker.list_watch,
            follow_chat=self.worker.relay.follow,
            identity={"replica_id": settings.replica_id, "worker_id": self.worker.worker_id},
            ready_check=store.ping,
            admin_token_path=settings.data_dir / ADMIN_TOKEN_FILE,
        )
        self.app = create_app(self.state)
        self.pubsub: PgPubSub | None = None

    async def connect_replicas(self) -> None:
        """On PostgreSQL, hear other replicas' commits (LISTEN/NOTIFY) and tell them ours."""
        if self.store.db.is_sqlite:
            return
        pubsub = PgPubSub(self.store.db.url, origin=self.worker.worker_id)
        pubsub.handler = self.worker.peers.on_notification
        pubsub.on_reconnect = self.worker.peers.resync
        self.store.notifier = pubsub
        self.worker.shared_database = True
        self.pubsub = pubsub
        await pubsub.start()

    async def build_model(self, config: StoredModelConfig) -> Model:
        model = await model_for_config(self.store, config)
        if isinstance(model, ScriptedModel) and self.settings.scripted_call_log is not None:
            model.call_log = self.settings.scripted_call_log
            model.caller = self.settings.replica_id
        return model

    def start(self) -> None:
        self.worker.start()

    def begin_shutdown(self) -> None:
        self.state.draining = True
        self.worker.draining = True
        self.hub.close_all("shutdown")
        self.worker.list_watch.close_all()

    async def stop(self) -> None:
        self.begin_shutdown()
        await self.worker.stop()
        if self.pubsub is not None:
            await self.pubsub.close()
        await self.store.close()


def _make_private_dirs(settings: Settings, sandbox: Sandbox) -> None:
    """The data dir and the workspace root: 0700, or 0711 when the sandbox runs as a
    user of its own, which must pass through (never list) them to reach a workspace."""
    mode = 0o711 if sandbox.file_owner is not None else 0o700
    for directory in (settings.data_dir, settings.effective_workspace_root):
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # not ours: the admin chose its mode
            os.chmod(directory, mode)
    # What an older chatd, or a tool run under a looser umask, left readable to others.
    for path in settings.data_dir.iterdir():
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o077:
            with contextlib.suppress(PermissionError):
                os.chmod(path, 0o600)


def announce_sandbox(replica: Replica) -> None:
    """Say at start where built-in tools run; without a working sandbox, `execute`
    and the process tools are refused (the reason is the API's 422)."""
    sandbox = replica.worker.workspaces.sandbox
    try:
        sandbox.check()
    except SandboxUnavailable as err:
        replica.state.sandbox_error = f"{err}"
        print(f"chatd: execute and the process tools are off: {err}", file=sys.stderr)
        return
    if not sandbox.confined:
        print(
            f"chatd: WARNING: CHATD_SANDBOX=unsandboxed: built-in tools run commands as "
            f"this server's user (uid {os.geteuid()}) and see everything it sees. Meant "
            "for a single-user laptop only.",
            file=sys.stderr,
        )
        return
    owner = sandbox.file_owner
    who = f"uid {owner[0]}" if owner is not None else "this server's uid, unprivileged"
    print(
        f"chatd: built-in tools run in the {sandbox.kind} sandbox ({who}, no network)",
        file=sys.stderr,
    )


async def build(settings: Settings) -> Replica:
    _make_private_dirs(settings, sandbox_for_settings(settings))
    store = await Store.open(
        settings.effective_database_url,
        data_dir=settings.data_dir,
        config=store_config(settings),
        secret_key=settings.secret_key.encode() if settings.secret_key else None,
    )
    await ensure_default_model(store)
    await warn_unreadable_keys(store)
    replica = Replica(settings, store)
    await replica.connect_replicas()
    return replica


# Allocations between young-generation collections. CPython's default (700) makes a
# streaming replica collect every few dozen parts; each collection walks the young
# objects of every chat. Measured on 200 streaming chats: ~15 % of the CPU per part.
GC_YOUNG_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Once the process is built: its long-lived objects (modules, app, settings) go to
    the permanent generation, never walked again, and young collections run less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class _Server(uvicorn.Server):
    replica: Replica

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises a captured SIGTERM after serving, killing the process
        # before chatd hands its chats back; `serve` installs its own handlers.
        yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Close the SSE streams first, or uvicorn waits for them forever.
        self.replica.begin_shutdown()
        super().handle_exit(sig, frame)


async def serve(settings: Settings) -> None:
    # Every file the server makes (database, keys, tokens, workspaces) is its own alone.
    os.umask(0o077)
    replica = await build(settings)
    announce_sandbox(replica)
    token = await ensure_admin_token(replica.store, settings)
    if token is not None:
        print(
            f"chatd: created user 'admin'; its API token (also in "
            f"{settings.data_dir / ADMIN_TOKEN_FILE}):\n{token}",
            file=sys.stderr,
        )
    config = uvicorn.Config(
        replica.app,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        log_level="warning",
        log_config=None,  # uvicorn's lines go through chatd's handler (chatd.logs)
        http="httptools",
        loop="none",
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )
    server = _Server(config)
    server.replica = replica
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    _tune_gc()
    replica.start()
    print(f"chatd: serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    try:
        await server.serve()
    finally:
        await replica.stop()


def run_serve(settings: Settings) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
