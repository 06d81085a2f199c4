"""SQLite's one-hop driver: statements behave exactly as through aiosqlite's own cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chatd.store import Database

_ITEMS = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/driver.db")
    async with database.write() as conn:
        await conn.run_sync(_ITEMS.create)
    try:
        yield database
    finally:
        await database.dispose()


async def test_statements_report_rows_counts_and_new_ids(db: Database) -> None:
    async with db.write() as conn:
        inserted = await conn.execute(sa.insert(_ITEMS).values(name="a"))
        assert inserted.inserted_primary_key == (1,)
        many = await conn.execute(sa.insert(_ITEMS), [{"name": "b"}, {"name": "c"}])
        assert many.rowcount == 2
        returned = await conn.execute(
            sa.insert(_ITEMS).values(name="d").returning(_ITEMS.c.id, _ITEMS.c.name)
        )
        assert returned.all() == [(4, "d")]
        updated = await conn.execute(
            sa.update(_ITEMS).where(_ITEMS.c.id > 2).values(name=_ITEMS.c.name + "!")
        )
        assert updated.rowcount == 2
    async with db.read() as conn:
        rows = (await conn.execute(sa.select(_ITEMS).order_by(_ITEMS.c.id))).all()
        assert rows == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!")]
        assert (await conn.execute(sa.select(_ITEMS).where(_ITEMS.c.id > 9))).all() == []


async def test_a_failed_statement_raises_its_kind_and_rolls_the_transaction_back(
    db: Database,
) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with db.write() as conn:
            await conn.execute(sa.insert(_ITEMS).values(name="x"))
            await conn.execute(sa.insert(_ITEMS).values(name="x"))
    async with db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(_ITEMS)) == 0
    async with db.write() as conn:  # the connection is usable again
        await conn.execute(sa.insert(_ITEMS).values(name="x"))
    async with db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(_ITEMS)) == 1
