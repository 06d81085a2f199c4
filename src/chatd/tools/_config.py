"""Limits of the built-in tools; the service derives them from `chatd.config.Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from chatd.config import Settings
from chatd.tools._processes import KILL_GRACE
from chatd.tools._sandbox import Bubblewrap, Sandbox, SandboxLimits, Unsandboxed

__all__ = ["BuiltinToolsConfig", "sandbox_for_settings"]

_MIB = 1024 * 1024

# 10 s / 4 h: upstream's defaultTimeout and maxExecuteTimeout (chattool/execute.go).
DEFAULT_EXECUTE_TIMEOUT = 10.0
MAX_EXECUTE_TIMEOUT = 4 * 3600.0
# 30 s: spec §7.6, the bound on every file tool and process_list / process_signal.
FILE_TOOL_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class BuiltinToolsConfig:
    """Limits of the built-in tools; durations in seconds."""

    execute_timeout: float = DEFAULT_EXECUTE_TIMEOUT
    execute_max_timeout: float = MAX_EXECUTE_TIMEOUT
    # Between SIGTERM and SIGKILL when a process group is terminated.
    kill_grace: float = KILL_GRACE
    file_tool_timeout: float = FILE_TOOL_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.execute_timeout <= self.execute_max_timeout:
            raise ValueError(
                "execute timeout must be positive and at most the maximum execute timeout"
            )
        if self.kill_grace < 0 or self.file_tool_timeout <= 0:
            raise ValueError("kill grace must be >= 0 and the file tool timeout > 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> BuiltinToolsConfig:
        """The execute timeouts of the service settings (`CHATD_EXECUTE_TIMEOUT`,
        `CHATD_EXECUTE_MAX_TIMEOUT`, already validated by `chatd.config`)."""
        return cls(
            execute_timeout=settings.execute_timeout,
            execute_max_timeout=settings.execute_max_timeout,
        )


def sandbox_for_settings(settings: Settings) -> Sandbox:
    """The sandbox `CHATD_SANDBOX` names, with the `CHATD_SANDBOX_*` limits. The data
    dir is hidden from it even where a system directory would show it."""
    limits = SandboxLimits(
        processes=settings.sandbox_processes,
        memory_bytes=settings.sandbox_memory_mb * _MIB,
        cpu_seconds=settings.sandbox_cpu_seconds,
        open_files=settings.sandbox_open_files,
        disk_bytes=settings.sandbox_disk_mb * _MIB,
        tmp_bytes=settings.sandbox_tmp_mb * _MIB,
    )
    if settings.sandbox == "unsandboxed":
        return Unsandboxed(limits)
    return Bubblewrap(
        limits,
        host_uid=settings.sandbox_uid,
        host_gid=settings.sandbox_gid,
        hidden=(settings.data_dir, settings.effective_workspace_root),
    )
