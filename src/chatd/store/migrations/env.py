"""Alembic environment: runs on the connection `chatd.store.upgrade` hands it."""

from __future__ import annotations

from alembic import context

from chatd.store._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `chatd migrate`, not the alembic command")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
