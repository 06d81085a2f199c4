"""Model configs name the provider-executed tools (web search) their chats may enable.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("model_configs", sa.Column("provider_tools", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("model_configs", "provider_tools")
