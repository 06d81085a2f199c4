"""Child chats (sub-agents): a chat may have a parent, which lists and waits for it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both engines, with no foreign key: SQLite can only add or
    # drop one by rebuilding `chats`, and dropping the old table would cascade-delete
    # every message. `delete_chat` deletes or detaches a parent's children itself.
    op.add_column("chats", sa.Column("parent_id", sa.String(36), nullable=True))
    op.create_index(
        "ix_chats_parent",
        "chats",
        ["parent_id"],
        postgresql_where=sa.text("parent_id IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_chats_parent", table_name="chats")
    op.drop_column("chats", "parent_id")
