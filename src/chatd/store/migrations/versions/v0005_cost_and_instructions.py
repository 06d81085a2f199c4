"""Model prices, the deployment's and each user's instructions, the sources a chat applied.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("model_configs", sa.Column("pricing", JSON, nullable=True))
    op.add_column("users", sa.Column("instructions", sa.Text(), nullable=True))
    op.add_column("chats", sa.Column("instructions", JSON, nullable=True))
    op.create_table(
        "deployment_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite >= 3.35): a batch copy of `users` or `chats` would
    # cascade-delete their tokens, chats and messages through the foreign keys.
    op.drop_table("deployment_settings")
    op.drop_column("chats", "instructions")
    op.drop_column("users", "instructions")
    op.drop_column("model_configs", "pricing")
