"""`Store`: the engine plus every transition and read, the one object the service holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from chatd.store._accounts import Accounts
from chatd.store._agents import ChildChats
from chatd.store._chat_admin import ChatAdministration
from chatd.store._chats import ChatTransitions
from chatd.store._engine import Database, data_dir_from_env, database_url_from_env
from chatd.store._events import EventSync
from chatd.store._files import Files
from chatd.store._instructions import InstructionSettings
from chatd.store._mcp_servers import McpServers
from chatd.store._migrations import upgrade
from chatd.store._reads import Reads
from chatd.store._responses import OpenAIResponses
from chatd.store._secrets import SecretBox, load_secret_key
from chatd.store._tx import StoreConfig
from chatd.store._usage import UsageReads
from chatd.store._worker import WorkerTransitions

__all__ = ["Store"]

PING_TIMEOUT = 2.0


class Store(
    ChatTransitions,
    ChildChats,
    ChatAdministration,
    WorkerTransitions,
    EventSync,
    Reads,
    UsageReads,
    Accounts,
    InstructionSettings,
    McpServers,
    OpenAIResponses,
    Files,
):
    """Every chat state change and read of chatd, each method one transaction.

    Open one per process with `await Store.open()` and close it with `close()`.
    Transitions return the new `Chat` snapshot or raise a `StoreError`.
    """

    def __init__(
        self,
        db: Database,
        *,
        config: StoreConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        secrets: SecretBox | None = None,
    ) -> None:
        super().__init__(db, config=config, clock=clock)
        self.secrets = secrets

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        data_dir: Path | None = None,
        config: StoreConfig | None = None,
        clock: Callable[[], datetime] | None = None,
        migrate: bool = True,
        secret_key: bytes | None = None,
    ) -> Store:
        """Connect to `url` (default: `CHATD_DATABASE_URL`, else SQLite in the data dir).

        With `migrate` the schema is upgraded first. The secret key defaults to
        `CHATD_SECRET_KEY`, else the data dir's generated `secret.key`.
        """
        directory = data_dir if data_dir is not None else data_dir_from_env()
        db = Database(url or database_url_from_env(directory))
        try:
            if migrate:
                await upgrade(db)
            key = secret_key if secret_key is not None else load_secret_key(directory)
        except BaseException:
            await db.dispose()
            raise
        return cls(db, config=config, clock=clock, secrets=SecretBox(key))

    async def ping(self) -> bool:
        """True when the database answers `SELECT 1` within 2 s (/readyz)."""
        try:
            async with asyncio.timeout(PING_TIMEOUT), self.db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (TimeoutError, OSError, DBAPIError):
            return False
        return True

    async def close(self) -> None:
        await self.db.dispose()
