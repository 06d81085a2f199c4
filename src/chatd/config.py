"""Service settings: read once from the environment (and `chatd serve` flags), validated.

Every name and default is service spec §0.1. A bad value is a `ConfigError` with a
one-line message naming the variable; `chatd serve` prints it and exits with status 2.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

__all__ = ["SANDBOX_KINDS", "TOOL_POLICIES", "ConfigError", "Settings", "load_settings"]

# CHATD_SANDBOX: where built-in tools run (docs/tools.md, "The sandbox").
SANDBOX_KINDS = ("bubblewrap", "unsandboxed")
# CHATD_BUILTIN_TOOLS and a user's override: which built-in tools may be enabled.
TOOL_POLICIES = ("none", "files", "all")


class ConfigError(ValueError):
    """A setting is missing, malformed or inconsistent; the message says which and why."""


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path(".chatd")
    database_url: str = ""  # empty: SQLite in data_dir
    replica_id: str = field(default_factory=_default_replica_id)
    host: str = "127.0.0.1"
    port: int = 8080
    acquire_interval: float = 1.0
    acquire_batch: int = 10
    lease_ttl: float = 30.0
    heartbeat_interval: float = 5.0
    sync_interval: float = 1.0
    max_concurrent_chats: int = 1000
    # Deployment-wide: at most this many top-level chats, and this many sub-agents
    # (child chats), run at once over all replicas; the rest wait `pending`, oldest
    # first (0: no limit). Upstream's are 5 and 10; these bound a runaway, not a team.
    max_running_chats: int = 500
    max_running_agents: int = 1000
    # Admission: no chat is claimed while the event loop runs timers later than this
    # (seconds; 0 turns the check off). Chats wait `pending` instead of slowing all.
    acquire_max_lag: float = 0.1
    # ...nor while the event loop's thread is busier than this share of a core (0: off),
    # so a saturated replica keeps some of its core for API calls such as interrupts.
    acquire_max_busy: float = 0.8
    max_queued_messages: int = 20
    requires_action_timeout: float = 300.0
    max_steps: int = 1200
    stream_buffer_events: int = 10_000
    stream_retain_events: int = 10_000
    stream_flush_interval: float = 0.05
    sse_keepalive: float = 15.0
    # An SSE connection whose socket takes no write for this long is dropped (§5.5).
    sse_write_deadline: float = 10.0
    shutdown_grace: float = 10.0
    workspace_root: Path | None = None  # None: data_dir / "workspaces"
    execute_timeout: float = 10.0
    execute_max_timeout: float = 4 * 3600.0
    # The OS sandbox every built-in tool runs in (docs/tools.md): "bubblewrap", or
    # "unsandboxed" for a single-user laptop (commands then run as the server's user).
    sandbox: str = "bubblewrap"
    # When the server runs as root, sandboxed commands run as this otherwise unused host
    # uid/gid (never as root: a root-mapped sandbox could read root's 0600 files).
    sandbox_uid: int = 60000
    sandbox_gid: int = 60000
    # Per-sandbox limits (setrlimit): processes of the sandbox user, address space per
    # process, CPU seconds per process, open files per process, bytes the workspace may
    # hold (also the largest file), and the size of the private /tmp (memory).
    sandbox_processes: int = 256
    sandbox_memory_mb: int = 2048
    sandbox_cpu_seconds: int = 3600
    sandbox_open_files: int = 1024
    sandbox_disk_mb: int = 1024
    sandbox_tmp_mb: int = 256
    # Which built-in tools non-admin users may enable ("none", "files" or "all"); an
    # admin can grant or restrict one user (PATCH /api/users/{id}, `chatd users tools`).
    builtin_tools: str = "files"
    secret_key: str | None = None  # None: the generated key file in data_dir
    default_model: str = "scripted:default"
    # Ask each new chat's model for a title (one extra model call per chat)...
    generate_titles: bool = True
    # ...or this model config (name, `provider:model` or id) instead, when set.
    title_model: str = ""
    # Tests: the scripted model appends a line per call here (see ScriptedModel.call_log).
    scripted_call_log: Path | None = None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "chatd.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"

    @property
    def effective_workspace_root(self) -> Path:
        return self.workspace_root or self.data_dir / "workspaces"

    def validate(self) -> Settings:
        """Check the cross-setting constraints of spec §0.1; returns self."""
        if self.heartbeat_interval * 3 > self.lease_ttl:
            raise ConfigError(
                "CHATD_HEARTBEAT_INTERVAL must be at most a third of CHATD_LEASE_TTL "
                f"(got {self.heartbeat_interval} s and {self.lease_ttl} s)"
            )
        if self.acquire_interval >= self.lease_ttl:
            raise ConfigError("CHATD_ACQUIRE_INTERVAL must be shorter than CHATD_LEASE_TTL")
        if self.sync_interval > self.heartbeat_interval:
            raise ConfigError("CHATD_SYNC_INTERVAL must not exceed CHATD_HEARTBEAT_INTERVAL")
        if not 0 < self.port < 65536:
            raise ConfigError(f"the port must be between 1 and 65535 (got {self.port})")
        if not 0 <= self.acquire_max_busy <= 1:
            raise ConfigError(
                "CHATD_ACQUIRE_MAX_BUSY is a share of one core, between 0 (off) and 1 "
                f"(got {self.acquire_max_busy})"
            )
        if self.sandbox not in SANDBOX_KINDS:
            raise ConfigError(
                f"CHATD_SANDBOX must be one of {', '.join(SANDBOX_KINDS)} (got {self.sandbox!r})"
            )
        if self.builtin_tools not in TOOL_POLICIES:
            raise ConfigError(
                f"CHATD_BUILTIN_TOOLS must be one of {', '.join(TOOL_POLICIES)} "
                f"(got {self.builtin_tools!r})"
            )
        if self.execute_timeout > self.execute_max_timeout:
            raise ConfigError("CHATD_EXECUTE_TIMEOUT must not exceed CHATD_EXECUTE_MAX_TIMEOUT")
        return self


_ENV = {
    "data_dir": "CHATD_DATA_DIR",
    "database_url": "CHATD_DATABASE_URL",
    "replica_id": "CHATD_REPLICA_ID",
    "acquire_interval": "CHATD_ACQUIRE_INTERVAL",
    "acquire_batch": "CHATD_ACQUIRE_BATCH",
    "lease_ttl": "CHATD_LEASE_TTL",
    "heartbeat_interval": "CHATD_HEARTBEAT_INTERVAL",
    "sync_interval": "CHATD_SYNC_INTERVAL",
    "max_concurrent_chats": "CHATD_MAX_CONCURRENT_CHATS",
    "max_running_chats": "CHATD_MAX_RUNNING_CHATS",
    "max_running_agents": "CHATD_MAX_RUNNING_AGENTS",
    "acquire_max_lag": "CHATD_ACQUIRE_MAX_LAG",
    "acquire_max_busy": "CHATD_ACQUIRE_MAX_BUSY",
    "max_queued_messages": "CHATD_MAX_QUEUED_MESSAGES",
    "requires_action_timeout": "CHATD_REQUIRES_ACTION_TIMEOUT",
    "max_steps": "CHATD_MAX_STEPS",
    "stream_buffer_events": "CHATD_STREAM_BUFFER_EVENTS",
    "stream_retain_events": "CHATD_STREAM_RETAIN_EVENTS",
    "stream_flush_interval": "CHATD_STREAM_FLUSH_INTERVAL",
    "sse_keepalive": "CHATD_SSE_KEEPALIVE",
    "sse_write_deadline": "CHATD_SSE_WRITE_DEADLINE",
    "shutdown_grace": "CHATD_SHUTDOWN_GRACE",
    "workspace_root": "CHATD_WORKSPACE_ROOT",
    "execute_timeout": "CHATD_EXECUTE_TIMEOUT",
    "execute_max_timeout": "CHATD_EXECUTE_MAX_TIMEOUT",
    "sandbox": "CHATD_SANDBOX",
    "sandbox_uid": "CHATD_SANDBOX_UID",
    "sandbox_gid": "CHATD_SANDBOX_GID",
    "sandbox_processes": "CHATD_SANDBOX_PROCESSES",
    "sandbox_memory_mb": "CHATD_SANDBOX_MEMORY_MB",
    "sandbox_cpu_seconds": "CHATD_SANDBOX_CPU_SECONDS",
    "sandbox_open_files": "CHATD_SANDBOX_OPEN_FILES",
    "sandbox_disk_mb": "CHATD_SANDBOX_DISK_MB",
    "sandbox_tmp_mb": "CHATD_SANDBOX_TMP_MB",
    "builtin_tools": "CHATD_BUILTIN_TOOLS",
    "secret_key": "CHATD_SECRET_KEY",
    "default_model": "CHATD_DEFAULT_MODEL",
    "generate_titles": "CHATD_GENERATE_TITLES",
    "title_model": "CHATD_TITLE_MODEL",
    "scripted_call_log": "CHATD_SCRIPTED_CALL_LOG",
}


# Settings where 0 means "off" (every other number must be positive).
_ZERO_IS_OFF = frozenset(
    {"acquire_max_lag", "acquire_max_busy", "max_running_chats", "max_running_agents"}
)


def _convert(name: str, raw: str, kind: object) -> object:
    variable = _ENV.get(name, name)
    text = raw.strip()
    if name in _ZERO_IS_OFF:
        whole = kind in ("int", int)
        try:
            number: float = int(text) if whole else float(text)
        except ValueError:
            number = -1.0
        if not number >= 0:
            what = "a whole number" if whole else "a number"
            raise ConfigError(f"{variable} must be {what}, 0 to turn it off (got {raw!r})")
        return number
    if kind in ("bool", bool):
        flag = text.lower()
        if flag in ("1", "true", "yes", "on"):
            return True
        if flag in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{variable} must be true or false (got {raw!r})")
    try:
        if kind in ("int", int):
            value: object = int(text)
            if int(text) <= 0:
                raise ValueError
        elif kind in ("float", float):
            value = float(text)
            if not float(text) > 0:
                raise ValueError
        elif kind in ("Path", "Path | None", Path):
            value = Path(text).expanduser()
        else:
            value = text
    except ValueError:
        raise ConfigError(f"{variable} must be a positive number (got {raw!r})") from None
    return value


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from `env` (default `os.environ`), then explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in fields(Settings):
        variable = _ENV.get(f.name)
        if variable is not None and env.get(variable, "").strip():
            values[f.name] = _convert(f.name, env[variable], f.type)
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
    return replace(Settings(), **values).validate()  # type: ignore[arg-type]
