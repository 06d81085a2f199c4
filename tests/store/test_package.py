"""The store package's shape: public names, shipped migrations, no SQL elsewhere."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

import chatd
from chatd.cli import app
from chatd.store import (
    Database,
    DatabaseTooNew,
    SecretBox,
    Store,
    current_revision,
    head_revision,
    load_secret_key,
    upgrade,
)
from chatd.store._schema import metadata

SRC = Path(chatd.__file__).parent


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", ["chatd.store", "chatd.store.testing"])
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=_isort_key)
    for attribute in module.__all__:
        assert hasattr(module, attribute), attribute


def test_migrations_ship_inside_the_package() -> None:
    versions = SRC / "store" / "migrations" / "versions"
    assert (versions / "__init__.py").exists()  # packaged with the wheel
    assert head_revision() == "0009"


# Importing a database driver or writing SQL outside the store; a database URL
# string (the config's default) is neither.
_SQL = re.compile(
    r"^\s*(?:from|import)\s+(sqlalchemy|asyncpg|aiosqlite|sqlite3)\b"
    r"|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b",
    re.MULTILINE,
)


def test_no_code_outside_the_store_issues_sql() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "store":
            continue
        source = path.read_text()
        if relative == Path("cli.py"):  # `chatd migrate` only renders the URL
            source = source.replace("from sqlalchemy.engine import make_url", "")
        if _SQL.search(source):
            offenders.append(str(relative))
    assert offenders == []


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    async def pragmas() -> list[object]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/p.db")
        try:
            async with db.read() as conn:
                return [
                    await conn.scalar(sa.text(f"PRAGMA {name}"))
                    for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
                ]
        finally:
            await db.dispose()

    assert asyncio.run(pragmas()) == ["wal", 1, 5000, 1]


def test_migrate_command_upgrades_and_is_idempotent(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"CHATD_DATA_DIR": str(tmp_path), "CHATD_DATABASE_URL": ""}
    first = runner.invoke(app, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert f"upgraded from an empty database to revision {head_revision()}" in first.output
    again = runner.invoke(app, ["migrate"], env=env)
    assert again.exit_code == 0 and "up to date" in again.output
    assert (tmp_path / "chatd.db").exists()


def test_migrate_refuses_a_database_from_a_newer_chatd(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/chatd.db"

    async def scenario() -> None:
        db = Database(url)
        try:
            await upgrade(db)
            async with db.write() as conn:
                await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
            with pytest.raises(DatabaseTooNew):
                await upgrade(db)
            assert await current_revision(db) == "9999"
        finally:
            await db.dispose()

    asyncio.run(scenario())
    result = CliRunner().invoke(app, ["migrate"], env={"CHATD_DATABASE_URL": url})
    assert result.exit_code == 2 and "newer version" in result.output


def test_secret_key_file_is_generated_once_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHATD_SECRET_KEY", raising=False)
    key = load_secret_key(tmp_path / "data")
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret_key(tmp_path / "data") == key
    box = SecretBox(key)
    assert box.decrypt(box.encrypt("sk-live-1234")) == "sk-live-1234"
    monkeypatch.setenv("CHATD_SECRET_KEY", SecretBox.__name__ and key.decode())
    assert load_secret_key(tmp_path / "elsewhere") == key
    with pytest.raises(ValueError, match="cannot decrypt"):
        SecretBox(b"0" * 43 + b"=").decrypt(box.encrypt("x"))


async def test_migrated_schema_matches_the_table_definitions(store: Store) -> None:
    def differences(connection: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with store.db.read() as conn:
        assert await conn.run_sync(differences) == []
