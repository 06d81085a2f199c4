"""Where a chat's commands run: the `Sandbox` interface, bubblewrap, and the explicit
unsandboxed mode.

A sandbox turns "run `sh -c COMMAND` in this workspace" into the local process that
does it (`SpawnSpec`). `Bubblewrap` (the default) runs it in new user, PID, IPC, UTS,
network and cgroup namespaces as an unprivileged user, with the system directories
read-only, a private `/tmp`, the chat's workspace as the only writable place, no view of
the server's data, environment or other chats, and rlimits on processes, memory, CPU,
open files and file size. `Unsandboxed` runs it as the server's own user, for a
single-user laptop. This module builds command lines; it does not track processes
(`_processes`) or touch files the model names (`_files`, `_beneath`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "INSTALL_HINT",
    "Bubblewrap",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "SpawnSpec",
    "Unsandboxed",
    "command_environment",
    "default_sandbox",
]

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
)
# The uid and gid commands see inside the sandbox: an ordinary user, never root.
INSIDE_UID = 1000
INSIDE_GID = 1000
_MIB = 1024 * 1024
# How much lower than the server sandboxed commands are scheduled (nice -n).
SANDBOX_NICE = 10
# Read-only system directories a command may need (binaries, libraries, /etc for
# passwd, certificates and the resolver); a missing one is skipped.
_SYSTEM_DIRS = ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Upstream's list: nothing a command runs may wait for a terminal or an editor.
NONINTERACTIVE_ENV: Mapping[str, str] = {
    "GIT_EDITOR": "true",
    "GIT_SEQUENCE_EDITOR": "true",
    "EDITOR": "true",
    "VISUAL": "true",
    "GIT_TERMINAL_PROMPT": "0",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
}
# The only server variables a command sees (locale and time zone); everything else
# (provider keys, CHATD_* settings, tokens) stays with the server.
_PASSED_THROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")


class SandboxUnavailable(RuntimeError):
    """The configured sandbox cannot run commands here; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-sandbox limits (setrlimit on the sandbox's processes).

    `processes` counts every process of the sandbox's host user (RLIMIT_NPROC);
    `memory_bytes` is each process's address space; `cpu_seconds` each process's CPU
    time; `disk_bytes` the largest file a command may write (RLIMIT_FSIZE) and the most
    the workspace may hold (enforced while commands run, see `Workspace`).
    """

    processes: int = 256
    memory_bytes: int = 2048 * _MIB
    cpu_seconds: int = 3600
    open_files: int = 1024
    disk_bytes: int = 1024 * _MIB
    tmp_bytes: int = 256 * _MIB

    def prlimit_args(self) -> list[str]:
        """util-linux `prlimit` options setting soft and hard limits alike."""
        return [
            f"--nproc={self.processes}",
            f"--as={self.memory_bytes}",
            f"--cpu={self.cpu_seconds}",
            f"--nofile={self.open_files}",
            f"--fsize={self.disk_bytes}",
            "--core=0",
        ]


@dataclass(slots=True)
class SpawnSpec:
    """How to start one command: what `asyncio.create_subprocess_exec` gets."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...] = ()
    # The process started is a wrapper (bwrap's monitor) around the command.
    wrapped: bool = False
    # fds opened for the spawn (closed by `close()` once the child has them).
    owned_fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.owned_fds:
            os.close(fd)
        self.owned_fds.clear()


class Sandbox(Protocol):
    """Runs a chat's commands somewhere its user cannot hurt the server.

    A backend builds the local process that runs a command (`spawn_spec`); that process
    must end when the command ends, carry its exit status (128 + N for signal N) and
    stop the command when it is signalled or killed. A remote backend (a container or
    a pod per chat) returns the argv of its exec client here; see docs/tools.md.
    """

    @property
    def kind(self) -> str:
        """`bubblewrap`, `unsandboxed`, …: what `chatd serve` announces."""
        ...

    @property
    def confined(self) -> bool:
        """Whether commands are kept from the server's files, network and processes."""
        ...

    @property
    def limits(self) -> SandboxLimits: ...

    @property
    def file_owner(self) -> tuple[int, int] | None:
        """(uid, gid) the workspace and the files tools create must belong to."""
        ...

    def check(self) -> None:
        """Raise `SandboxUnavailable` (saying how to fix it) if commands cannot run."""
        ...

    def prepare(self, root: Path) -> None:
        """Make `root` (a chat's workspace, already created) usable by the sandbox."""
        ...

    def spawn_spec(
        self, command: str, *, root: Path, cwd: Path, env: Mapping[str, str]
    ) -> SpawnSpec: ...


def command_environment(
    chat_id: str, home: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allowlisted environment of a chat's commands: PATH, HOME (the workspace),
    the locale and time zone, the non-interactive variables and CHATD_CHAT_ID. Never
    the server's other variables: provider keys and settings stay with the server."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in _PASSED_THROUGH if name in source}
    env.setdefault("LANG", "C.UTF-8")
    env.update(NONINTERACTIVE_ENV)
    env.update(
        PATH=_PATH,
        HOME=str(home),
        TMPDIR="/tmp",
        USER="chatd",
        LOGNAME="chatd",
        CHATD_CHAT_ID=chat_id,
    )
    return env


@dataclass(frozen=True, slots=True)
class Unsandboxed:
    """Commands run as the server's own user with the server's view of the machine.

    Meant for a single-user laptop; `chatd serve` announces it at start. The environment
    is still the allowlisted one and the timeouts still apply; nothing else is confined.
    """

    limits: SandboxLimits = field(default_factory=SandboxLimits)

    @property
    def kind(self) -> str:
        return "unsandboxed"

    @property
    def confined(self) -> bool:
        return False

    @property
    def file_owner(self) -> tuple[int, int] | None:
        return None

    def check(self) -> None:
        return None

    def prepare(self, root: Path) -> None:
        return None

    def spawn_spec(
        self, command: str, *, root: Path, cwd: Path, env: Mapping[str, str]
    ) -> SpawnSpec:
        return SpawnSpec(argv=["/bin/sh", "-c", command], env=dict(env), cwd=str(cwd))


class Bubblewrap:
    """Each command in its own bubblewrap sandbox (https://github.com/containers/bubblewrap).

    When the server runs as root, bwrap itself runs as `host_uid`/`host_gid` (an
    otherwise unused user): a sandbox user mapped to root would own root's files. The
    workspace is then owned by that user, mode 0700. As any other user, the sandbox's
    host user is the server's own (bwrap cannot map to anyone else); the server's files
    stay unreachable because nothing but the system directories and the workspace is
    mounted in the sandbox.
    """

    __slots__ = (
        "_checked",
        "_hidden",
        "_host_gid",
        "_host_uid",
        "_limits",
        "bwrap",
        "nice",
        "prlimit",
        "setpriv",
    )

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        host_uid: int = 60000,
        host_gid: int = 60000,
        hidden: Sequence[str | os.PathLike[str]] = (),
        bwrap: str | None = None,
    ) -> None:
        self._limits = limits or SandboxLimits()
        root = os.geteuid() == 0
        self._host_uid = host_uid if root else None
        self._host_gid = host_gid if root else None
        # Paths never to show even where a system directory contains them (a data dir
        # under /opt, say): each is covered by an empty tmpfs.
        self._hidden = tuple(os.path.realpath(p) for p in hidden)
        self.bwrap = bwrap or shutil.which("bwrap") or ""
        self.prlimit = shutil.which("prlimit") or ""
        # Dropping to the sandbox user is util-linux's setpriv, not a spawn argument:
        # uvloop's subprocesses take no user or group.
        self.setpriv = shutil.which("setpriv") or ""
        self.nice = shutil.which("nice") or ""
        self._checked: str | None = None

    @property
    def kind(self) -> str:
        return "bubblewrap"

    @property
    def confined(self) -> bool:
        return True

    @property
    def limits(self) -> SandboxLimits:
        return self._limits

    @property
    def file_owner(self) -> tuple[int, int] | None:
        if self._host_uid is None or self._host_gid is None:
            return None
        return self._host_uid, self._host_gid

    def check(self) -> None:
        if self._checked == "":
            return
        if self._checked is None:
            self._checked = self._probe()
        if self._checked:
            raise SandboxUnavailable(self._checked)

    def _probe(self) -> str:
        """'' when a trial sandbox runs `true`, else why not (one line)."""
        if not self.bwrap or not os.access(self.bwrap, os.X_OK):
            return f"the sandbox needs bubblewrap (bwrap), which is not installed: {INSTALL_HINT}"
        if not self.prlimit or (self._host_uid is not None and not self.setpriv):
            return "the sandbox needs prlimit and setpriv (util-linux), which are not installed"
        spec = self._spec(["true"], workspace=None, cwd="/", env={"PATH": _PATH})
        try:
            done = subprocess.run(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:
            return f"bubblewrap could not start: {err}"
        if done.returncode != 0:
            reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
            return (
                "bubblewrap cannot create a sandbox on this host "
                f"({reason[-1] if reason else f'exit status {done.returncode}'}); "
                "unprivileged user namespaces must be enabled (sysctl user.max_user_namespaces)"
            )
        return ""

    def prepare(self, root: Path) -> None:
        owner = self.file_owner
        if owner is not None:
            os.chown(root, *owner)
        os.chmod(root, 0o700)

    def spawn_spec(
        self, command: str, *, root: Path, cwd: Path, env: Mapping[str, str]
    ) -> SpawnSpec:
        # The workspace goes in as an fd opened here: its ancestors (the data dir) need
        # not be open to the sandbox user beyond traversal.
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self._spec(
                ["/bin/sh", "-c", command], workspace=(fd, str(root)), cwd=str(cwd), env=env
            )
        except BaseException:
            os.close(fd)
            raise

    def _spec(
        self,
        argv: list[str],
        *,
        workspace: tuple[int, str] | None,
        cwd: str,
        env: Mapping[str, str],
    ) -> SpawnSpec:
        args = []
        if self._host_uid is not None and self._host_gid is not None:
            args += [
                self.setpriv,
                f"--reuid={self._host_uid}",
                f"--regid={self._host_gid}",
                "--clear-groups",
                "--",
            ]
        if self.nice:
            # Below the server's priority: a busy or forking sandbox must not starve the
            # replica's event loop (its streams, its health checks, other chats).
            args += [self.nice, "-n", str(SANDBOX_NICE)]
        args += [self.prlimit, *self._limits.prlimit_args(), "--", self.bwrap]
        args += [
            "--unshare-all",  # user, pid, ipc, uts, cgroup and network namespaces
            "--unshare-user",
            "--disable-userns",  # no nested user namespaces: less kernel to attack
            "--die-with-parent",
            "--uid",
            str(INSIDE_UID),
            "--gid",
            str(INSIDE_GID),
            "--hostname",
            "sandbox",
        ]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--size", str(self._limits.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--dir", "/var/tmp"]
        for path in self._hidden:
            if any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS):
                args += ["--tmpfs", path]
        pass_fds: tuple[int, ...] = ()
        owned: list[int] = []
        if workspace is not None:
            fd, path = workspace
            args += ["--bind-fd", str(fd), path]
            pass_fds, owned = (fd,), [fd]
        args += ["--chdir", cwd, "--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        args += ["--", *argv]
        return SpawnSpec(
            argv=args,
            env={"PATH": _PATH},
            cwd="/",
            pass_fds=pass_fds,
            wrapped=True,
            owned_fds=owned,
        )


def default_sandbox(limits: SandboxLimits | None = None) -> Bubblewrap:
    """The sandbox a `Workspace` gets when none is named: bubblewrap."""
    return Bubblewrap(limits)
