"""The tables (spec §3.2) and indexes (§3.3) as SQLAlchemy Core metadata.

This is the shape the code reads and writes; the Alembic revisions in
`migrations/` create it. `tests/store/test_migrations.py` checks that the two
agree on both engines. Columns beyond the spec's list are marked "chatd" below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from chatd.store._nul import decode_text, encode_text
from chatd.types import MessagePart

__all__ = [
    "NulSafeString",
    "NulSafeText",
    "PartsJSON",
    "UTCDateTime",
    "api_tokens",
    "chat_file_links",
    "chat_files",
    "chat_heartbeats",
    "chat_messages",
    "chat_queued_messages",
    "chat_stream_events",
    "chat_stream_tail",
    "chats",
    "deployment_settings",
    "mcp_servers",
    "metadata",
    "model_configs",
    "openai_responses",
    "provider_keys",
    "users",
]

metadata = sa.MetaData()

#: JSON columns are JSON (TEXT) on SQLite and JSONB on PostgreSQL (spec §3.1).
JSONValue = sa.JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on both engines.

    SQLite has no timestamp type: values are stored as naive UTC text, which sorts
    and compares correctly because every value has the same format.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class NulSafeString(sa.TypeDecorator[str]):
    """A string column that stores U+0000 on PostgreSQL too (`_nul`), as SQLite does."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql":
            return value
        return encode_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql":
            return value
        return decode_text(value)


class NulSafeText(NulSafeString):
    """`NulSafeString` without a length."""

    impl = sa.Text
    cache_ok = True


class PartsJSON(sa.TypeDecorator[list[MessagePart]]):
    """A message's ordered parts: `list[chatd.types.MessagePart]` in Python, JSON in SQL."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: list[MessagePart] | None, dialect: Dialect) -> Any:
        return None if value is None else msgspec.to_builtins(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[MessagePart] | None:
        return None if value is None else msgspec.convert(value, list[MessagePart])


def _id(name: str = "id", *args: Any, **kwargs: Any) -> sa.Column[str]:
    return sa.Column(name, NulSafeString(36), *args, **kwargs)


def _timestamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def _chat_fk() -> sa.Column[str]:
    return _id("chat_id", sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False)


users = sa.Table(
    "users",
    metadata,
    _id(primary_key=True),
    sa.Column("username", NulSafeString(64), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean(), nullable=False, default=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Which built-in tools the user may enable ("none", "files", "all"); NULL: the
    # deployment's CHATD_BUILTIN_TOOLS (admins: "all"). See chatd.tools._policy.
    sa.Column("tool_policy", sa.String(16), nullable=True),
    # chatd: the user's own instructions, joined into every chat's system prompt.
    sa.Column("instructions", NulSafeText(), nullable=True),
)

#: chatd: deployment-wide values an admin sets through the API (every replica reads
#: them), by name: "instructions" (the deployment's system prompt).
deployment_settings = sa.Table(
    "deployment_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", NulSafeText(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(primary_key=True),
    _id("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", NulSafeString(128), nullable=False, default=""),  # chatd
    sa.Column("prefix", sa.String(12), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ux_api_tokens_prefix", "prefix", unique=True),
)

provider_keys = sa.Table(
    "provider_keys",
    metadata,
    _id(primary_key=True),
    sa.Column("name", NulSafeString(128), nullable=False, unique=True),
    sa.Column("provider", NulSafeString(32), nullable=False),
    sa.Column("ciphertext", sa.Text(), nullable=False),
    sa.Column("last4", sa.String(4), nullable=False),
    *_timestamps(),
)

model_configs = sa.Table(
    "model_configs",
    metadata,
    _id(primary_key=True),
    sa.Column("name", NulSafeString(128), nullable=False, unique=True),
    sa.Column("provider", NulSafeString(32), nullable=False),
    sa.Column("model", NulSafeString(256), nullable=False),
    sa.Column("base_url", NulSafeText(), nullable=True),
    _id("provider_key_id", sa.ForeignKey("provider_keys.id", ondelete="SET NULL"), nullable=True),
    sa.Column("options", JSONValue, nullable=False),
    sa.Column("context_limit", sa.Integer(), nullable=True),
    sa.Column("compaction_threshold_percent", sa.Integer(), nullable=False, default=70),
    sa.Column("enabled", sa.Boolean(), nullable=False, default=True),
    sa.Column("is_default", sa.Boolean(), nullable=False, default=False),
    # chatd: USD per million tokens as decimal strings, by kind (NULL: unpriced).
    sa.Column("pricing", JSONValue, nullable=True),
    # chatd: the provider-executed tools ("web_search") its chats may enable; NULL: none.
    sa.Column("provider_tools", JSONValue, nullable=True),
    *_timestamps(),
    sa.Index(
        "ux_model_configs_default",
        "is_default",
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    ),
)

mcp_servers = sa.Table(
    "mcp_servers",
    metadata,
    _id(primary_key=True),
    sa.Column("slug", sa.String(32), nullable=False, unique=True),
    sa.Column("transport", sa.String(16), nullable=False),
    sa.Column("command", JSONValue, nullable=True),
    sa.Column("env", JSONValue, nullable=True),
    sa.Column("url", sa.Text(), nullable=True),
    sa.Column("headers_ciphertext", sa.Text(), nullable=True),
    sa.Column("allow_tools", JSONValue, nullable=False),
    sa.Column("deny_tools", JSONValue, nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, default=True),
    sa.Column("connect_timeout_s", sa.Float(), nullable=False, default=10.0),
    sa.Column("call_timeout_s", sa.Float(), nullable=False, default=60.0),
    sa.Column("tool_cache", JSONValue, nullable=True),
    *_timestamps(),
)

_BIG = sa.BigInteger()

chats = sa.Table(
    "chats",
    metadata,
    _id(primary_key=True),
    _id("owner_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", NulSafeString(256), nullable=False),
    sa.Column("title_source", sa.String(16), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("archived", sa.Boolean(), nullable=False),
    _id("model_config_id", sa.ForeignKey("model_configs.id", ondelete="SET NULL"), nullable=True),
    sa.Column("tool_config", JSONValue, nullable=False),
    sa.Column("system_prompt", NulSafeText(), nullable=True),
    sa.Column("snapshot_version", _BIG, nullable=False),
    sa.Column("history_version", _BIG, nullable=False),
    sa.Column("queue_version", _BIG, nullable=False),
    sa.Column("generation_attempt", _BIG, nullable=False),
    sa.Column("retry_state_version", _BIG, nullable=False),
    sa.Column("lease_epoch", _BIG, nullable=False),
    sa.Column("seq_reserved", _BIG, nullable=False),
    sa.Column("emitted_state", JSONValue, nullable=True),
    sa.Column("pruned_through_seq", _BIG, nullable=False),
    # chatd: the highest message position, so appending never scans history.
    sa.Column("last_position", _BIG, nullable=False),
    # chatd: rows in chat_queued_messages, so status decisions and lists need no count.
    sa.Column("queue_length", sa.Integer(), nullable=False),
    # chatd: position of the newest compaction/clear boundary (0: none).
    sa.Column("boundary_position", _BIG, nullable=False),
    # chatd: snapshot_version of the last edit/clear/compaction, which rewrote
    # history before `last_position`; a worker reading history incrementally
    # reloads it whole when this moves.
    sa.Column("history_reset_version", _BIG, nullable=False),
    sa.Column("worker_id", sa.String(128), nullable=True),
    _id("runner_id", nullable=True),
    sa.Column("last_error", JSONValue, nullable=True),
    sa.Column("retry_state", JSONValue, nullable=True),
    sa.Column("requires_action_deadline_at", UTCDateTime(), nullable=True),
    sa.Column("compaction_requested_at", UTCDateTime(), nullable=True),
    # chatd: the Idempotency-Key of the POST /api/chats that created it.
    sa.Column("create_request_key", NulSafeString(128), nullable=True),
    # chatd: the instruction sources its last run joined into the system prompt.
    sa.Column("instructions", JSONValue, nullable=True),
    # chatd: "plan" (read-only tools and propose_plan until the plan is approved) or NULL.
    sa.Column("mode", sa.String(16), nullable=True),
    # chatd: the chat that spawned this one (a sub-agent, depth 1), or NULL. No foreign
    # key: `delete_chat` removes or detaches the children itself, and SQLite can neither
    # add nor drop a column with one without rebuilding `chats` (which would cascade).
    _id("parent_id", nullable=True),
    *_timestamps(),
    sa.Index(
        "ix_chats_acquire",
        "status",
        "updated_at",
        postgresql_where=sa.text("NOT archived"),
        sqlite_where=sa.text("NOT archived"),
    ),
    sa.Index(
        "ix_chats_busy",
        "status",
        postgresql_where=sa.text("status IN ('running', 'interrupting')"),
        sqlite_where=sa.text("status IN ('running', 'interrupting')"),
    ),
    sa.Index(
        "ix_chats_parent",
        "parent_id",
        postgresql_where=sa.text("parent_id IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_chats_deadline",
        "requires_action_deadline_at",
        postgresql_where=sa.text("status = 'requires_action'"),
        sqlite_where=sa.text("status = 'requires_action'"),
    ),
    sa.Index(
        "ux_chats_create_key",
        "owner_id",
        "create_request_key",
        unique=True,
        postgresql_where=sa.text("create_request_key IS NOT NULL"),
        sqlite_where=sa.text("create_request_key IS NOT NULL"),
    ),
)

sa.Index(
    "ix_chats_owner",
    chats.c.owner_id,
    chats.c.archived,
    chats.c.updated_at.desc(),
    chats.c.id.desc(),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    _id(primary_key=True),
    _chat_fk(),
    sa.Column("position", _BIG, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # chatd: what produced a non-ordinary row: system_prompt, summary, boundary.
    sa.Column("kind", sa.String(16), nullable=True),
    sa.Column("parts", PartsJSON(), nullable=False),
    sa.Column("visibility", sa.String(8), nullable=False),
    sa.Column("compressed", sa.Boolean(), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("revision", _BIG, nullable=False),
    _id("step_id", nullable=True),
    _id("run_id", nullable=True),
    _id("model_config_id", nullable=True),
    sa.Column("provider", NulSafeString(32), nullable=True),
    sa.Column("model", NulSafeString(256), nullable=True),
    sa.Column("input_tokens", _BIG, nullable=True),
    sa.Column("output_tokens", _BIG, nullable=True),
    sa.Column("total_tokens", _BIG, nullable=True),
    sa.Column("reasoning_tokens", _BIG, nullable=True),
    sa.Column("cache_creation_tokens", _BIG, nullable=True),
    sa.Column("cache_read_tokens", _BIG, nullable=True),
    sa.Column("context_limit", _BIG, nullable=True),
    sa.Column("runtime_ms", _BIG, nullable=True),
    sa.Column("cost_micros", _BIG, nullable=True),
    _id("created_by", sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("request_key", NulSafeString(128), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ux_chat_messages_position", "chat_id", "position", unique=True),
    sa.Index("ix_chat_messages_revision", "chat_id", "revision"),
    sa.Index(
        "ux_chat_messages_step",
        "chat_id",
        "step_id",
        "role",
        unique=True,
        postgresql_where=sa.text("step_id IS NOT NULL"),
        sqlite_where=sa.text("step_id IS NOT NULL"),
    ),
    sa.Index(
        "ux_chat_messages_request_key",
        "chat_id",
        "request_key",
        unique=True,
        postgresql_where=sa.text("request_key IS NOT NULL"),
        sqlite_where=sa.text("request_key IS NOT NULL"),
    ),
)

chat_queued_messages = sa.Table(
    "chat_queued_messages",
    metadata,
    _id(primary_key=True),
    _chat_fk(),
    sa.Column("position", _BIG, nullable=False),
    sa.Column("parts", PartsJSON(), nullable=False),
    _id("model_config_id", nullable=True),
    _id("created_by", sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("request_key", NulSafeString(128), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ux_chat_queued_messages_position", "chat_id", "position", unique=True),
)

chat_heartbeats = sa.Table(
    "chat_heartbeats",
    metadata,
    _id("chat_id", sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    _id("runner_id", nullable=False),
    sa.Column("worker_id", sa.String(128), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_chat_heartbeats_expires", "expires_at"),
)

chat_stream_events = sa.Table(
    "chat_stream_events",
    metadata,
    _chat_fk(),
    sa.Column("seq", _BIG, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("chat_id", "seq"),
)

#: SQLite only: the replica's 50 ms event flushes land here first, append-only in
#: arrival order (an integer key, no per-chat index), and are folded into
#: `chat_stream_events` in chat order about once a second. A flush then writes a few
#: adjacent pages instead of one page per streaming chat. Readers of the log read both.
chat_stream_tail = sa.Table(
    "chat_stream_tail",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _chat_fk(),
    sa.Column("seq", _BIG, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

#: chatd: the OpenAI-compatible front door's responses (docs/openai.md). A response is
#: one turn of a chat: its events are the chat's events after `after_seq`, from the
#: message at `position` to the turn's end; only the request the client sent is stored.
openai_responses = sa.Table(
    "openai_responses",
    metadata,
    sa.Column("id", NulSafeString(64), primary_key=True),
    _chat_fk(),
    _id("owner_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("after_seq", _BIG, nullable=False),
    # The position of the message that starts the turn (the user's, or the client's
    # tool results): the turn's events are the ones from that message on.
    sa.Column("position", _BIG, nullable=False),
    sa.Column("request", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_openai_responses_chat", "chat_id", "after_seq"),
)

#: chatd: uploaded files (issue 22). The bytes live in the database, so every replica
#: serves them; a file is its uploader's alone and outlives the chats it is in.
chat_files = sa.Table(
    "chat_files",
    metadata,
    _id(primary_key=True),
    _id("owner_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", NulSafeString(255), nullable=False),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("size", _BIG, nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_chat_files_owner", "owner_id"),
)

#: chatd: which uploaded files a chat's messages name (at most 50 a chat). `position`
#: orders the links, oldest first, so the oldest is the one evicted.
chat_file_links = sa.Table(
    "chat_file_links",
    metadata,
    _chat_fk(),
    _id("file_id", sa.ForeignKey("chat_files.id", ondelete="CASCADE"), nullable=False),
    sa.Column("position", _BIG, nullable=False),
    sa.PrimaryKeyConstraint("chat_id", "file_id"),
    sa.Index("ix_chat_file_links_file", "file_id"),
)
