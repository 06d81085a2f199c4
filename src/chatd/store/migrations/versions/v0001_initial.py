"""The initial schema: every table of spec §3.2 and every index of §3.3.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
# The id of the `scripted:default` model config every fresh database starts with.
DEFAULT_MODEL_CONFIG_ID = "00000000-0000-7000-8000-000000000001"


def upgrade() -> None:
    op.create_table(
        "mcp_servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("command", JSON, nullable=True),
        sa.Column("env", JSON, nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("headers_ciphertext", sa.Text(), nullable=True),
        sa.Column("allow_tools", JSON, nullable=False),
        sa.Column("deny_tools", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("connect_timeout_s", sa.Float(), nullable=False),
        sa.Column("call_timeout_s", sa.Float(), nullable=False),
        sa.Column("tool_cache", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "provider_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_api_tokens_prefix", "api_tokens", ["prefix"], unique=True)
    op.create_table(
        "model_configs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("provider_key_id", sa.String(length=36), nullable=True),
        sa.Column("options", JSON, nullable=False),
        sa.Column("context_limit", sa.Integer(), nullable=True),
        sa.Column("compaction_threshold_percent", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["provider_key_id"], ["provider_keys.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index(
        "ux_model_configs_default",
        "model_configs",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )
    op.create_table(
        "chats",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("title_source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("model_config_id", sa.String(length=36), nullable=True),
        sa.Column("tool_config", JSON, nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("snapshot_version", sa.BigInteger(), nullable=False),
        sa.Column("history_version", sa.BigInteger(), nullable=False),
        sa.Column("queue_version", sa.BigInteger(), nullable=False),
        sa.Column("generation_attempt", sa.BigInteger(), nullable=False),
        sa.Column("retry_state_version", sa.BigInteger(), nullable=False),
        sa.Column("lease_epoch", sa.BigInteger(), nullable=False),
        sa.Column("seq_reserved", sa.BigInteger(), nullable=False),
        sa.Column("emitted_state", JSON, nullable=True),
        sa.Column("pruned_through_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("queue_length", sa.Integer(), nullable=False),
        sa.Column("boundary_position", sa.BigInteger(), nullable=False),
        sa.Column("history_reset_version", sa.BigInteger(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("runner_id", sa.String(length=36), nullable=True),
        sa.Column("last_error", JSON, nullable=True),
        sa.Column("retry_state", JSON, nullable=True),
        sa.Column("requires_action_deadline_at", TIMESTAMP, nullable=True),
        sa.Column("compaction_requested_at", TIMESTAMP, nullable=True),
        sa.Column("create_request_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["model_config_id"], ["model_configs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_chats_acquire",
        "chats",
        ["status", "updated_at"],
        unique=False,
        postgresql_where=sa.text("NOT archived"),
        sqlite_where=sa.text("NOT archived"),
    )
    op.create_index(
        "ix_chats_busy",
        "chats",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('running', 'interrupting')"),
        sqlite_where=sa.text("status IN ('running', 'interrupting')"),
    )
    op.create_index(
        "ix_chats_deadline",
        "chats",
        ["requires_action_deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'requires_action'"),
        sqlite_where=sa.text("status = 'requires_action'"),
    )
    op.create_index(
        "ix_chats_owner",
        "chats",
        [
            "owner_id",
            "archived",
            sa.literal_column("updated_at DESC"),
            sa.literal_column("id DESC"),
        ],
        unique=False,
    )
    op.create_index(
        "ux_chats_create_key",
        "chats",
        ["owner_id", "create_request_key"],
        unique=True,
        postgresql_where=sa.text("create_request_key IS NOT NULL"),
        sqlite_where=sa.text("create_request_key IS NOT NULL"),
    )
    # Heartbeats are rewritten every few seconds and worthless after a crash: UNLOGGED
    # on PostgreSQL (as upstream), so renewals cost no WAL.
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "chat_heartbeats",
        sa.Column("chat_id", sa.String(length=36), nullable=False),
        sa.Column("runner_id", sa.String(length=36), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chat_id"),
        prefixes=unlogged,
    )
    op.create_index("ix_chat_heartbeats_expires", "chat_heartbeats", ["expires_at"], unique=False)
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("chat_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("parts", JSON, nullable=False),
        sa.Column("visibility", sa.String(length=8), nullable=False),
        sa.Column("compressed", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("step_id", sa.String(length=36), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("model_config_id", sa.String(length=36), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("total_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_creation_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=True),
        sa.Column("context_limit", sa.BigInteger(), nullable=True),
        sa.Column("runtime_ms", sa.BigInteger(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("request_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_chat_messages_revision", "chat_messages", ["chat_id", "revision"], unique=False
    )
    op.create_index(
        "ux_chat_messages_position", "chat_messages", ["chat_id", "position"], unique=True
    )
    op.create_index(
        "ux_chat_messages_request_key",
        "chat_messages",
        ["chat_id", "request_key"],
        unique=True,
        postgresql_where=sa.text("request_key IS NOT NULL"),
        sqlite_where=sa.text("request_key IS NOT NULL"),
    )
    op.create_index(
        "ux_chat_messages_step",
        "chat_messages",
        ["chat_id", "step_id", "role"],
        unique=True,
        postgresql_where=sa.text("step_id IS NOT NULL"),
        sqlite_where=sa.text("step_id IS NOT NULL"),
    )
    op.create_table(
        "chat_queued_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("chat_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("parts", JSON, nullable=False),
        sa.Column("model_config_id", sa.String(length=36), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("request_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_chat_queued_messages_position",
        "chat_queued_messages",
        ["chat_id", "position"],
        unique=True,
    )
    op.create_table(
        "chat_stream_events",
        sa.Column("chat_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["chat_id"], ["chats.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("chat_id", "seq"),
    )
    now = datetime.now(UTC)
    model_configs = sa.table(
        "model_configs",
        sa.column("id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("provider", sa.String()),
        sa.column("model", sa.String()),
        sa.column("options", JSON),
        sa.column("compaction_threshold_percent", sa.Integer()),
        sa.column("enabled", sa.Boolean()),
        sa.column("is_default", sa.Boolean()),
        sa.column("created_at", TIMESTAMP),
        sa.column("updated_at", TIMESTAMP),
    )
    op.bulk_insert(
        model_configs,
        [
            {
                "id": DEFAULT_MODEL_CONFIG_ID,
                "name": "scripted:default",
                "provider": "scripted",
                "model": "default",
                "options": {},
                "compaction_threshold_percent": 70,
                "enabled": True,
                "is_default": True,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("chat_stream_events")
    op.drop_index("ux_chat_queued_messages_position", table_name="chat_queued_messages")
    op.drop_table("chat_queued_messages")
    op.drop_index(
        "ux_chat_messages_step",
        table_name="chat_messages",
        postgresql_where=sa.text("step_id IS NOT NULL"),
        sqlite_where=sa.text("step_id IS NOT NULL"),
    )
    op.drop_index(
        "ux_chat_messages_request_key",
        table_name="chat_messages",
        postgresql_where=sa.text("request_key IS NOT NULL"),
        sqlite_where=sa.text("request_key IS NOT NULL"),
    )
    op.drop_index("ux_chat_messages_position", table_name="chat_messages")
    op.drop_index("ix_chat_messages_revision", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index("ix_chat_heartbeats_expires", table_name="chat_heartbeats")
    op.drop_table("chat_heartbeats")
    op.drop_index(
        "ux_chats_create_key",
        table_name="chats",
        postgresql_where=sa.text("create_request_key IS NOT NULL"),
        sqlite_where=sa.text("create_request_key IS NOT NULL"),
    )
    op.drop_index("ix_chats_owner", table_name="chats")
    op.drop_index(
        "ix_chats_deadline",
        table_name="chats",
        postgresql_where=sa.text("status = 'requires_action'"),
        sqlite_where=sa.text("status = 'requires_action'"),
    )
    op.drop_index(
        "ix_chats_busy",
        table_name="chats",
        postgresql_where=sa.text("status IN ('running', 'interrupting')"),
        sqlite_where=sa.text("status IN ('running', 'interrupting')"),
    )
    op.drop_index(
        "ix_chats_acquire",
        table_name="chats",
        postgresql_where=sa.text("NOT archived"),
        sqlite_where=sa.text("NOT archived"),
    )
    op.drop_table("chats")
    op.drop_index(
        "ux_model_configs_default",
        table_name="model_configs",
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )
    op.drop_table("model_configs")
    op.drop_index("ux_api_tokens_prefix", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("provider_keys")
    op.drop_table("mcp_servers")
