"""What the store returns: snapshots of rows, and the small enums of the state machine.

Snapshots are frozen msgspec structs built from one row; they are values, never
live handles, so holding one never holds a connection or a lock.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from chatd.types import Message, MessagePart, Role

__all__ = [
    "PLAN_MODE",
    "PRICE_KEYS",
    "ApiToken",
    "BusyBehavior",
    "Chat",
    "ChatDetails",
    "ChatFile",
    "ChatStatus",
    "History",
    "Lease",
    "McpServer",
    "McpServerSecrets",
    "ModelConfig",
    "Page",
    "ProviderKey",
    "QueuedMessage",
    "SendResult",
    "StoredMessage",
    "StoredResponse",
    "StreamEvent",
    "UsageTotals",
    "User",
    "Visibility",
]


# A chat's `mode` when it explores with read-only tools and ends its turns by proposing
# a plan (`propose_plan`) until the user approves it.
PLAN_MODE = "plan"


class ChatStatus(enum.StrEnum):
    """Spec §2.1."""

    WAITING = "waiting"
    PENDING = "pending"
    RUNNING = "running"
    INTERRUPTING = "interrupting"
    REQUIRES_ACTION = "requires_action"
    ERROR = "error"

    @property
    def is_busy(self) -> bool:
        """A turn is in progress (archive, delete and clear are refused)."""
        return self in _BUSY


_BUSY = frozenset(
    {
        ChatStatus.PENDING,
        ChatStatus.RUNNING,
        ChatStatus.INTERRUPTING,
        ChatStatus.REQUIRES_ACTION,
    }
)


class BusyBehavior(enum.StrEnum):
    """What `send_message` does while the chat is busy (spec §2.4)."""

    QUEUE = "queue"
    INTERRUPT = "interrupt"


class Visibility(enum.StrEnum):
    BOTH = "both"
    MODEL = "model"  # sent to the model, never shown (compaction summary, clear marker)
    USER = "user"  # shown, never sent to the model (chat_cleared / chat_summarized notes)


class Chat(msgspec.Struct, frozen=True, kw_only=True):
    """One chat row as a transition left it."""

    id: str
    owner_id: str
    title: str
    title_source: str
    status: ChatStatus
    archived: bool
    model_config_id: str | None
    tool_config: dict[str, Any]
    system_prompt: str | None
    snapshot_version: int
    history_version: int
    queue_version: int
    generation_attempt: int
    retry_state_version: int
    lease_epoch: int
    seq_reserved: int
    emitted_state: dict[str, Any] | None
    pruned_through_seq: int
    last_position: int
    queue_length: int
    boundary_position: int
    history_reset_version: int
    worker_id: str | None
    runner_id: str | None
    last_error: dict[str, Any] | None
    retry_state: dict[str, Any] | None
    requires_action_deadline_at: datetime | None
    compaction_requested_at: datetime | None
    create_request_key: str | None
    created_at: datetime
    updated_at: datetime
    # The instruction sources the last run joined before the chat's own system prompt
    # ("deployment", "user", "agents_md", "chat"); None before the first run.
    instructions: list[str] | None = None
    # PLAN_MODE, or None: every tool the chat's configuration gives it.
    mode: str | None = None
    # The chat that spawned this one with `spawn_agent` (children cannot spawn).
    parent_id: str | None = None

    @property
    def state(self) -> str:
        """The execution-state shorthand of spec §2.2: "W", "R1", "XE0"…"""
        letter = _LETTERS[self.status]
        if self.status != ChatStatus.WAITING:
            letter += "1" if self.queue_length else "0"
        return f"X{letter}" if self.archived else letter


_LETTERS = {
    ChatStatus.WAITING: "W",
    ChatStatus.PENDING: "P",
    ChatStatus.RUNNING: "R",
    ChatStatus.INTERRUPTING: "I",
    ChatStatus.REQUIRES_ACTION: "A",
    ChatStatus.ERROR: "E",
}


class StoredMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One row of history."""

    id: str
    chat_id: str
    position: int
    role: Role
    kind: str | None
    parts: list[MessagePart]
    visibility: Visibility
    compressed: bool
    deleted: bool
    revision: int
    step_id: str | None
    run_id: str | None
    model_config_id: str | None
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    reasoning_tokens: int | None
    cache_creation_tokens: int | None
    cache_read_tokens: int | None
    context_limit: int | None
    runtime_ms: int | None
    cost_micros: int | None
    created_by: str | None
    request_key: str | None
    created_at: datetime

    def to_message(self) -> Message:
        return Message(
            self.role, list(self.parts), kind="summary" if self.kind == "summary" else ""
        )


class QueuedMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    chat_id: str
    position: int
    parts: list[MessagePart]
    model_config_id: str | None
    created_by: str | None
    request_key: str | None
    created_at: datetime


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """`send_message`'s answer: the chat, and where the message went (history or queue)."""

    chat: Chat
    message: StoredMessage | None = None
    queued: QueuedMessage | None = None
    replayed: bool = False  # an Idempotency-Key repeat: nothing was changed


class ChatDetails(msgspec.Struct, frozen=True, kw_only=True):
    """What a chat's full resource shows beyond its row (`Store.chat_details`)."""

    queue: list[QueuedMessage]  # head first
    model_config: ModelConfig | None  # the chat's (or the default's); None once deleted
    # What the user sees, only while the chat waits for client tools (else empty).
    messages: list[StoredMessage]
    usage: dict[str, int | None]  # token and cost totals, as `Store.usage_totals`
    # The chats it spawned (sub-agents), oldest first; only a top-level chat has any.
    children: list[Chat] = msgspec.field(default_factory=list)


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A claim on a chat won by `acquire_pending_chats`; its fields fence worker writes."""

    chat: Chat
    runner_id: str
    lease_epoch: int
    first_seq: int  # the first event seq this owner may use (spec §5.1)


class Capacity(msgspec.Struct, frozen=True, kw_only=True):
    """Deployment-wide limits on running chats (0: none): top-level chats and sub-agents
    (child chats) each have their own, so waiting parents never starve their children."""

    chats: int = 0
    agents: int = 0

    @property
    def limited(self) -> bool:
        return self.chats > 0 or self.agents > 0


class Acquisition(msgspec.Struct, frozen=True, kw_only=True):
    """What one claim won, and the deployment's running and queued chats by kind
    ("chat", "agent") right after it (empty when no capacity limit is set).
    `waited` is, per claimed pending chat, its kind and the seconds it was pending."""

    leases: list[Lease]
    running: dict[str, int] = msgspec.field(default_factory=dict)
    queued: dict[str, int] = msgspec.field(default_factory=dict)
    waited: list[tuple[str, float]] = msgspec.field(default_factory=list)


class History(msgspec.Struct, frozen=True, kw_only=True):
    """The model's view of a chat (or what is new in it after `after_position`)."""

    chat_id: str
    messages: list[Message]
    last_position: int  # the highest position read (or `after_position` when none)
    history_version: int
    history_reset_version: int


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A response of the OpenAI-compatible API: the turn of `chat_id` started by the
    message at `position`, whose events follow `after_seq`, and the request that
    started it (as the client sent it)."""

    id: str
    chat_id: str
    owner_id: str
    after_seq: int
    position: int
    request: dict[str, Any]
    created_at: datetime


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One durable event of the chat's stream (spec §5.1); `data` is the JSON payload.

    `encoded`, when the writer has it, is `data` already encoded as JSON: the store
    writes it as is instead of encoding `data` again.
    """

    seq: int
    type: str
    data: dict[str, Any]
    encoded: bytes | None = msgspec.field(default=None)


class Page(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Chat]
    next_cursor: str | None


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str
    is_admin: bool
    created_at: datetime
    # An admin's override of the deployment's built-in tool policy; None: the default.
    tool_policy: str | None = None
    # The user's own instructions for every chat of theirs (None: none).
    instructions: str | None = None


class ApiToken(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ProviderKey(msgspec.Struct, frozen=True, kw_only=True):
    """A stored provider key; the secret itself only comes out of `reveal_provider_key`."""

    id: str
    name: str
    provider: str
    last4: str
    created_at: datetime
    updated_at: datetime


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    provider: str
    model: str
    base_url: str | None
    provider_key_id: str | None
    options: dict[str, Any]
    context_limit: int | None
    compaction_threshold_percent: int
    enabled: bool
    is_default: bool
    created_at: datetime
    updated_at: datetime
    # USD per million tokens as decimal strings, keyed by `PRICE_KEYS`; None: unpriced.
    pricing: dict[str, str] | None = None
    # The provider-executed tools ("web_search") its chats may enable; None: none.
    provider_tools: list[str] | None = None


#: The kinds of token a model config may price, in USD per million tokens: input,
#: output, cache read, cache write (the order `chatd.worker.cost` relies on).
PRICE_KEYS = (
    "input_price_per_million_tokens",
    "output_price_per_million_tokens",
    "cache_read_price_per_million_tokens",
    "cache_write_price_per_million_tokens",
)


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Token and cost sums of assistant messages, of one provider and model or (both
    None) of all of them (`Store.usage_by_model`).

    `cost_micros` adds up the priced messages only; `unpriced_messages` counts those
    that ran on a model config without prices (their tokens are in the sums).
    """

    provider: str | None = None
    model: str | None = None
    cost_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    messages: int = 0
    unpriced_messages: int = 0

    @classmethod
    def total(cls, parts: Sequence[UsageTotals]) -> UsageTotals:
        """The sums of `parts`, of no one model."""
        fields = [f for f in cls.__struct_fields__ if f not in ("provider", "model")]
        return cls(**{f: sum(getattr(p, f) for p in parts) for f in fields})


class McpServer(msgspec.Struct, frozen=True, kw_only=True):
    """A configured MCP server (spec §7.4) as routes show it: the names of its
    environment variables and headers, never their values."""

    id: str
    slug: str
    transport: str  # "stdio" or "streamable_http"
    command: list[str]
    env_names: list[str]
    url: str | None
    header_names: list[str]
    allow_tools: list[str]  # empty: every tool
    deny_tools: list[str]
    enabled: bool
    connect_timeout_s: float
    call_timeout_s: float
    tool_cache: list[dict[str, Any]]  # the last listing: name, description, input_schema
    created_at: datetime
    updated_at: datetime


class McpServerSecrets(msgspec.Struct, frozen=True, kw_only=True):
    """A server's secret values in clear, only for connecting it (`reveal_mcp_servers`).
    `error` says why they could not be decrypted (then both maps are empty)."""

    env: dict[str, str] = {}
    headers: dict[str, str] = {}
    error: str = ""

    def __repr__(self) -> str:  # never print values into a log
        return f"McpServerSecrets(env={sorted(self.env)}, headers={sorted(self.headers)})"


class ChatFile(msgspec.Struct, frozen=True, kw_only=True):
    """An uploaded file's metadata (its bytes are read separately)."""

    id: str
    owner_id: str
    name: str
    media_type: str
    size: int
    created_at: datetime
