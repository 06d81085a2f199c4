"""Race-free paths beneath a workspace root: lookups walk directory fds, never names.

A chat's sandboxed commands can rename, replace or symlink anything in the workspace at any
moment, so a path checked by name may lead elsewhere by the time the server opens it. Here
each component is opened relative to the fd of the directory before it with `O_NOFOLLOW`,
symlinks are read from the link that was opened and followed by hand (at most 40, as the
kernel allows), `..` never climbs above the root, and what is finally read, written or
renamed is addressed as (parent directory fd, name). This module must never hand the kernel
a path of more than one component below the root, nor one whose symlinks the kernel would
follow, and must not leave an fd open on any way out. Linux only (`O_PATH`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from chatd.tools._args import ToolInputError

__all__ = ["MAX_SYMLINKS", "Target", "beneath", "write_atomically"]

# 40: the kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS); a loop
# ends in ELOOP instead of a hang.
MAX_SYMLINKS = 40
# O_PATH opens a component without reading it (so a FIFO or device is never opened) and,
# with O_NOFOLLOW, opens a symlink itself, whose target is then read from that very inode.
_LOOKUP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Owner = tuple[int, int]


@contextlib.contextmanager
def beneath(root: Path, path: str) -> Iterator[Target]:
    """Where `path` leads inside `root` (a real path), with its parent directory held open.

    `ToolInputError` if the path is empty, holds a NUL, or would leave the root through
    `..`, an absolute path or a symlink. A missing last component is fine (it is what a
    write creates), and so are missing parents: `Target.write` creates them.
    """
    if not path.strip():
        raise ToolInputError("path must not be empty")
    if "\0" in path:
        raise ToolInputError("path must not contain NUL characters")
    root_fd = os.open(root, _LOOKUP | os.O_DIRECTORY)
    try:
        target = _Walk(root, root_fd, path).run()
        try:
            yield target
        finally:
            target.close()
    finally:
        os.close(root_fd)


class Target:
    """`name` in an open directory inside the root, below `missing` directories not made yet.

    `display` is the path relative to the root with every symlink followed (how results
    name files; "." for the root itself) and `path` the same on the host. Every OS error an
    operation raises names `path`.
    """

    __slots__ = ("_dir_fd", "_missing", "_owns_fd", "display", "name", "path")

    def __init__(
        self, root: Path, dir_fd: int, *, owns_fd: bool, missing: list[str], name: str, display: str
    ) -> None:
        self._dir_fd = dir_fd
        self._owns_fd = owns_fd
        self._missing = missing
        self.name = name
        self.display = display
        self.path = root / display

    def close(self) -> None:
        if self._owns_fd:
            self._owns_fd = False
            os.close(self._dir_fd)

    @contextlib.contextmanager
    def open_read(
        self, check: Callable[[os.stat_result], object]
    ) -> Iterator[tuple[BinaryIO, os.stat_result]]:
        """The file open for reading and its `fstat`, once `check` has accepted that `fstat`.

        `check` raises to refuse a directory or a special file; opening never blocks on a
        FIFO, and a symlink swapped in since the lookup is refused (ELOOP), not followed.
        """
        with self._named():
            fd = os.open(self.name, _READ, dir_fd=self._parent())
            try:
                info = os.fstat(fd)
                check(info)
                with open(fd, "rb", closefd=False) as file:
                    yield file, info
            finally:
                os.close(fd)

    def write(self, data: bytes, owner: Owner | None) -> None:
        """Replace the entry with a new file holding `data`, making missing parents first.

        New directories and the file belong to `owner` (uid, gid) when it is given.
        """
        with self._named():
            parent = self._make_parents(owner)
            try:
                write_atomically(parent, self.name, data, owner)
            finally:
                if parent != self._dir_fd:
                    os.close(parent)

    def _parent(self) -> int:
        if self._missing:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        return self._dir_fd

    def _make_parents(self, owner: Owner | None) -> int:
        fd = self._dir_fd
        try:
            for name in self._missing:
                child = _make_directory(fd, name, owner)
                if fd != self._dir_fd:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != self._dir_fd:
                os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            err.filename, err.filename2 = str(self.path), None
            raise


def write_atomically(dir_fd: int, name: str, data: bytes, owner: Owner | None) -> None:
    """Make `name` in the directory `dir_fd` a new file holding `data`, through a rename.

    The rename replaces whatever `name` is (a symlink, a hard link to a file elsewhere)
    instead of writing through it, and a failed write leaves no trace; a regular file's
    mode is kept.
    """
    try:
        existing: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    temporary = f".{name}.{secrets.token_hex(4)}.tmp"
    # 0o666 minus the umask, as for any new file; O_EXCL so nothing else is clobbered.
    fd = os.open(temporary, _NEW_FILE, 0o666, dir_fd=dir_fd)
    try:
        try:
            _write_all(fd, data)
            if owner is not None:
                os.fchown(fd, *owner)  # before fchmod: chown clears set-id bits
            if existing is not None and stat.S_ISREG(existing.st_mode):
                os.fchmod(fd, _kept_mode(existing, os.fstat(fd)))
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise


def _kept_mode(old: os.stat_result, new: os.stat_result) -> int:
    mode = stat.S_IMODE(old.st_mode)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        # Set-id bits belong to the old owner: carried over, a file the sandbox made
        # setuid would come back as a setuid program of the server's user.
        mode &= ~(stat.S_ISUID | stat.S_ISGID)
    return mode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_directory(dir_fd: int, name: str, owner: Owner | None) -> int:
    """An fd of the directory `name` in `dir_fd`, made now (0o777 minus the umask) if missing."""
    try:
        os.mkdir(name, 0o777, dir_fd=dir_fd)
    except FileExistsError:
        # Made meanwhile (by the sandbox): entered only if it is a directory, not a symlink.
        return os.open(name, _LOOKUP | os.O_DIRECTORY, dir_fd=dir_fd)
    fd = os.open(name, _NEW_DIRECTORY, dir_fd=dir_fd)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _stack(path: str) -> list[str]:
    """`path`'s components, last first (a stack to pop), without empty and `.` ones."""
    return [part for part in reversed(path.split("/")) if part not in ("", ".")]


def _fold(tail: list[str]) -> list[str]:
    """`tail` with each `name/..` pair dropped: a missing directory cannot be a symlink."""
    folded: list[str] = []
    for part in tail:
        if part == ".." and folded and folded[-1] != "..":
            folded.pop()
        else:
            folded.append(part)
    return folded


class _Walk:
    """One lookup of `path` from `root_fd`: the directories opened below it, and what is left."""

    __slots__ = ("hops", "opened", "path", "pending", "root", "root_fd")

    def __init__(self, root: Path, root_fd: int, path: str) -> None:
        self.root = root
        self.root_fd = root_fd
        self.path = path
        self.opened: list[tuple[str, int]] = []  # (name, fd) below the root, outermost first
        self.pending = self._below_root(path) if path.startswith("/") else _stack(path)
        self.hops = 0

    def run(self) -> Target:
        try:
            return self._run()
        except OSError as err:
            # A lookup error names the path as given (its real location is not known yet).
            err.filename, err.filename2 = os.path.normpath(self.root / self.path), None
            self._close_opened()
            raise
        except BaseException:
            self._close_opened()
            raise

    def _run(self) -> Target:
        name: str | None = None
        missing: list[str] = []
        while self.pending:
            part = self.pending.pop()
            if part == "..":
                self._leave()
                continue
            try:
                fd = os.open(part, _LOOKUP, dir_fd=self._fd())
            except FileNotFoundError:
                tail = [part, *reversed(self.pending)]
                folded = _fold(tail)
                if len(folded) < len(tail):
                    self.pending = folded[::-1]
                    continue
                *missing, name = tail  # nothing below a missing directory exists either
                break
            name = self._enter(part, fd)
            if name is not None:
                break
        if name is None:  # the path ends at a directory entered (or the root)
            if self.opened:
                name, fd = self.opened.pop()
                os.close(fd)
            else:
                name = "."
        names = [entered for entered, _ in self.opened]
        display = "/".join([*names, *missing, name])
        target = Target(
            self.root,
            self._fd(),
            owns_fd=bool(self.opened),
            missing=missing,
            name=name,
            display=display,
        )
        if self.opened:
            self.opened.pop()  # its fd now belongs to the target
        self._close_opened()
        return target

    def _enter(self, part: str, fd: int) -> str | None:
        """Follow `part` (open as `fd`): its name if it is the last component, else None."""
        try:
            info = os.fstat(fd)
            if stat.S_ISLNK(info.st_mode):
                self._follow(os.readlink("", dir_fd=fd))
                return None
            if not self.pending:
                return part
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            self.opened.append((part, fd))
            fd = -1
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def _follow(self, link: str) -> None:
        self.hops += 1
        if self.hops > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        if link.startswith("/"):
            rest = self._below_root(link)
            self._close_opened()
            self.pending.extend(rest)
        else:
            self.pending.extend(_stack(link))

    def _leave(self) -> None:
        if not self.opened:
            raise self._outside()
        os.close(self.opened.pop()[1])

    def _below_root(self, absolute: str) -> list[str]:
        """The components of `absolute` below the root, as a stack; refused if not below it."""
        parts = _stack(absolute)[::-1]
        prefix = list(self.root.parts[1:])
        if parts[: len(prefix)] != prefix:
            raise self._outside()
        return parts[len(prefix) :][::-1]

    def _fd(self) -> int:
        return self.opened[-1][1] if self.opened else self.root_fd

    def _close_opened(self) -> None:
        while self.opened:
            os.close(self.opened.pop()[1])

    def _outside(self) -> ToolInputError:
        return ToolInputError(f"Path {self.path} is outside the workspace.")
