"""Test helpers shipped with the store: a throwaway PostgreSQL cluster and a settable clock.

`TemporaryPostgres` runs `initdb` and `pg_ctl` from the Debian server binaries
(`/usr/lib/postgresql/<version>/bin`) into a fresh temporary directory, listening
only on a unix socket inside it. PostgreSQL refuses to run as root, so when the
caller is root the cluster runs as the `postgres` system user (created when
missing). Missing binaries raise `PostgresUnavailable`: tests must fail, not skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL_CONFIG_ID",
    "FakeClock",
    "PostgresUnavailable",
    "TemporaryPostgres",
    "find_postgres_bin",
]

#: The `scripted:default` model config every migrated database starts with.
DEFAULT_MODEL_CONFIG_ID = "00000000-0000-7000-8000-000000000001"

SUPERUSER = "chatd"
_RUN_AS = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_postgres_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL server."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: (
            int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
            "install them with `apt-get install postgresql` (`make test` does this)"
        )
    return Path(found[-1]).parent


class TemporaryPostgres:
    """A PostgreSQL cluster in a temporary directory, gone after `stop()`.

    `durable=False` (the default, for tests) turns fsync off; benchmarks that
    compare durability keep the server defaults.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.bin = find_postgres_bin()
        self.durable = durable
        self.directory: Path | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def socket_dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the cluster is not started")
        return self.directory

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` in this cluster (unix socket)."""
        return f"postgresql+asyncpg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _run(self, *args: str) -> None:
        kwargs: dict[str, Any] = {"check": True, "capture_output": True, "text": True}
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        try:
            subprocess.run(args, cwd=self.socket_dir, **kwargs)
        except subprocess.CalledProcessError as err:
            raise RuntimeError(
                f"{' '.join(args)} failed ({err.returncode}):\n{err.stdout}{err.stderr}"
            ) from err

    def start(self) -> str:
        """initdb and start; returns the URL of the `postgres` database."""
        self.directory = Path(tempfile.mkdtemp(prefix="chatd-pg-"))
        if os.geteuid() == 0:
            self._user = _system_user()
            os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        data = self.directory / "data"
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.start_server()
        return self.url()

    def start_server(self) -> None:
        """Start the (initialised) cluster; waits until it accepts connections."""
        settings = [
            f"-k {self.socket_dir}",
            "-c listen_addresses=''",
            "-c max_connections=300",
        ]
        if not self.durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.socket_dir / "data"),
            "-l",
            str(self.socket_dir / "server.log"),
            "-o",
            " ".join(settings),
            "-w",
            "start",
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep the cluster (`start_server` brings it back).

        `fast` disconnects every client and shuts down cleanly; `immediate` is a crash.
        """
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.socket_dir / "data"), "-m", mode, "-w", "stop"
        )

    def stop(self) -> None:
        if self.directory is None:
            return
        try:
            if not (self.directory / "data" / "postmaster.pid").exists():
                return  # stopped by `stop_server` and never started again
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "-w",
                "stop",
            )
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    async def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE / DROP DATABASE)."""
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(host=str(self.socket_dir), user=SUPERUSER, database=database)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database (optionally a copy of `template`); returns its URL."""
        clause = f' TEMPLATE "{template}"' if template else ""
        await self.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        await self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_RUN_AS)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _RUN_AS],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(_RUN_AS)


class FakeClock:
    """A clock for `Store(clock=…)` that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
