"""chatd's persistence: the tables, the migrations and the chat state machine.

Every chat state change is one `Store` method running one transaction that locks
the chat row, checks its precondition, bumps the versions of spec §2.3 and
returns the new `Chat` snapshot; a refusal raises a `StoreError` and changes
nothing. The API and the worker call these methods and never write SQL. The same
code runs on SQLite (the embedded default) and PostgreSQL (replicas).
See docs/store.md for the schema and the transition table.
"""

from chatd.store._chats import NO_TEXT_TITLE
from chatd.store._engine import Database, data_dir_from_env, database_url_from_env
from chatd.store._errors import (
    ChatIsInterrupting,
    InvalidRequest,
    NotFound,
    RejectionKind,
    StaleFence,
    StoreError,
    TransitionRejected,
    database_unreachable,
)
from chatd.store._files import MAX_CHAT_FILES
from chatd.store._ids import new_id
from chatd.store._instructions import MAX_INSTRUCTIONS_CHARS
from chatd.store._migrations import DatabaseTooNew, current_revision, head_revision, upgrade
from chatd.store._models import (
    PLAN_MODE,
    PRICE_KEYS,
    Acquisition,
    ApiToken,
    BusyBehavior,
    Capacity,
    Chat,
    ChatDetails,
    ChatFile,
    ChatStatus,
    History,
    Lease,
    McpServer,
    McpServerSecrets,
    ModelConfig,
    Page,
    ProviderKey,
    QueuedMessage,
    SendResult,
    StoredMessage,
    StoredResponse,
    StreamEvent,
    UsageTotals,
    User,
    Visibility,
)
from chatd.store._pubsub import Notifier, PgPubSub
from chatd.store._secrets import SecretBox, UnreadableSecret, load_secret_key
from chatd.store._store import Store
from chatd.store._tx import CANCELLED_TOOL_RESULT, Fence, StoreConfig

__all__ = [
    "CANCELLED_TOOL_RESULT",
    "MAX_CHAT_FILES",
    "MAX_INSTRUCTIONS_CHARS",
    "NO_TEXT_TITLE",
    "PLAN_MODE",
    "PRICE_KEYS",
    "Acquisition",
    "ApiToken",
    "BusyBehavior",
    "Capacity",
    "Chat",
    "ChatDetails",
    "ChatFile",
    "ChatIsInterrupting",
    "ChatStatus",
    "Database",
    "DatabaseTooNew",
    "Fence",
    "History",
    "InvalidRequest",
    "Lease",
    "McpServer",
    "McpServerSecrets",
    "ModelConfig",
    "NotFound",
    "Notifier",
    "Page",
    "PgPubSub",
    "ProviderKey",
    "QueuedMessage",
    "RejectionKind",
    "SecretBox",
    "SendResult",
    "StaleFence",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoredMessage",
    "StoredResponse",
    "StreamEvent",
    "TransitionRejected",
    "UnreadableSecret",
    "UsageTotals",
    "User",
    "Visibility",
    "current_revision",
    "data_dir_from_env",
    "database_unreachable",
    "database_url_from_env",
    "head_revision",
    "load_secret_key",
    "new_id",
    "upgrade",
]
