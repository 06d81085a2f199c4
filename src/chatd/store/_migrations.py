"""Alembic, run from inside the package: `chatd migrate` and `serve`'s start-up upgrade.

The revisions live in `chatd/store/migrations/versions` and ship with the wheel,
so an installed chatd can upgrade its database without a checkout. PostgreSQL
replicas starting together serialise on an advisory lock and migrate once.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from chatd.store._engine import Database

__all__ = ["DatabaseTooNew", "current_revision", "head_revision", "upgrade"]

SCRIPT_LOCATION = "chatd.store:migrations"
# An arbitrary constant: the key of the advisory lock replicas take to migrate.
ADVISORY_LOCK_KEY = 0x63686174


class DatabaseTooNew(RuntimeError):
    """The database was migrated by a newer chatd than this one."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")
    current = _current(connection)
    script = ScriptDirectory.from_config(_config())
    if current is not None and not _known(script, current):
        raise DatabaseTooNew(
            f"the database is at revision {current}, which this chatd does not know: "
            "it was migrated by a newer version"
        )
    command.upgrade(_config(connection), revision)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


async def upgrade(db: Database, revision: str = "head") -> None:
    """Upgrade the schema to `revision` in one transaction."""
    async with db.write() as conn:
        await conn.run_sync(_upgrade, revision)
