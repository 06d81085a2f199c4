"""A user's built-in tool policy, set by an admin (NULL: the deployment's default).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("tool_policy", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35): a batch copy of `users` would cascade-delete
    # every token and chat through their foreign keys.
    op.drop_column("users", "tool_policy")
