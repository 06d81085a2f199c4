"""Every store test runs twice: on SQLite and on a throwaway PostgreSQL cluster.

The cluster is started once per session from the installed server binaries
(`chatd.store.testing.TemporaryPostgres`) with one migrated database that is
emptied (a few ms, where CREATE DATABASE costs ~1 s) before every test;
each SQLite test gets a copy of a migrated file. A missing PostgreSQL is an
error, never a skip: the store must be proven on both engines.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from chatd.store import Database, SecretBox, Store, StoreConfig, upgrade
from chatd.store.testing import DEFAULT_MODEL_CONFIG_ID, FakeClock, TemporaryPostgres

BACKENDS = ["sqlite", "postgresql"]
DATABASE = "chatd_test"
# DELETE rather than TRUNCATE: the tables are tiny and TRUNCATE costs ~100 ms of file
# operations. Everything else cascades from chats and users.
_EMPTY = (
    "DELETE FROM chats; DELETE FROM users; DELETE FROM provider_keys; "
    "DELETE FROM mcp_servers; DELETE FROM deployment_settings; "
    f"DELETE FROM model_configs WHERE id <> '{DEFAULT_MODEL_CONFIG_ID}'; "
    # a test that made another config the default leaves none behind otherwise
    f"UPDATE model_configs SET is_default = true WHERE id = '{DEFAULT_MODEL_CONFIG_ID}'"
)
# Short durations, as the service tests use (spec §0.1).
CONFIG = StoreConfig(lease_ttl=3.0, requires_action_timeout=300.0, max_queued_messages=20)

_names = itertools.count(1)


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    cluster = TemporaryPostgres()
    cluster.start()
    try:
        asyncio.run(cluster.execute(f'CREATE DATABASE "{DATABASE}"'))
        asyncio.run(_migrate(cluster.url(DATABASE)))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chatd.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


class Backend:
    """Makes fresh migrated databases of one engine (inside the caller's event loop)."""

    def __init__(
        self,
        name: str,
        tmp_path: Path,
        sqlite_template: Path,
        postgres: Callable[[], TemporaryPostgres],
    ) -> None:
        self.name = name
        self._tmp = tmp_path
        self._sqlite_template = sqlite_template
        self._postgres = postgres

    async def new_url(self) -> str:
        number = next(_names)
        if self.name == "sqlite":
            path = self._tmp / f"chatd-{number}.db"
            shutil.copyfile(self._sqlite_template, path)
            return f"sqlite+aiosqlite:///{path}"
        postgres = self._postgres()
        await postgres.execute(_EMPTY, DATABASE)
        return postgres.url(DATABASE)

    async def empty_url(self) -> str:
        """A database with no schema at all (for migration tests); on PostgreSQL a new
        database in the session's cluster, dropped with it."""
        number = next(_names)
        if self.name == "sqlite":
            return f"sqlite+aiosqlite:///{self._tmp}/empty-{number}.db"
        postgres = self._postgres()
        await postgres.execute(f'CREATE DATABASE "empty_{number}"')
        return postgres.url(f"empty_{number}")

    async def new_store(self, clock: FakeClock | None = None) -> Store:
        return Store(
            Database(await self.new_url()),
            config=CONFIG,
            clock=clock or FakeClock(),
            secrets=SecretBox(Fernet.generate_key()),
        )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Backend:
    postgres: TemporaryPostgres | None = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")

    def get_postgres() -> TemporaryPostgres:
        assert postgres is not None
        return postgres

    return Backend(request.param, tmp_path, sqlite_template, get_postgres)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    store = await backend.new_store(clock)
    try:
        yield store
    finally:
        await store.close()


async def table_columns(db: Database, table: str) -> list[str]:
    """The column names of `table` as the database has them now (after a migration)."""
    async with db.read() as conn:
        return await conn.run_sync(
            lambda c: [col["name"] for col in sa.inspect(c).get_columns(table)]
        )
