"""Generated titles for new chats (spec §4.10), written in the background."""

from __future__ import annotations

import asyncio
import logging

from chatd.loop import Model
from chatd.store import NO_TEXT_TITLE, Chat
from chatd.titles import generate_title
from chatd.types import Role, TextPart
from chatd.worker.context import RunnerContext

__all__ = ["TitleWriter"]

log = logging.getLogger("chatd.worker")


class TitleWriter:
    """Asks a model for a new chat's title; the default title stays on any failure."""

    def __init__(self, replica: RunnerContext) -> None:
        self.replica = replica
        self.store = replica.store
        self.settings = replica.settings

    async def write(self, chat: Chat) -> None:
        try:
            text = await self._first_message_text(chat)
            if not text.strip():
                return
            title = await generate_title(await self._title_model(chat), text)
            if title:
                await self.store.update_title(
                    chat.id, title, source="generated", only_if_source="default"
                )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.info("chat %s: no generated title (%s: %s)", chat.id, type(err).__name__, err)

    async def _title_model(self, chat: Chat) -> Model:
        """`CHATD_TITLE_MODEL` when it names an enabled config, else the chat's own model."""
        wanted = self.settings.title_model
        if wanted:
            for config in await self.store.list_model_configs():
                names = {config.id, config.name, f"{config.provider}:{config.model}"}
                if wanted in names and config.enabled:
                    return await self.replica.build_model(config)
            log.warning("CHATD_TITLE_MODEL %r names no enabled model config", wanted)
        return await self.replica.build_model(await self.replica.model_config(chat))

    async def _first_message_text(self, chat: Chat) -> str:
        """The text of a new chat's first message; its default title when that is all of it."""
        if chat.title == NO_TEXT_TITLE:
            return ""  # no text to name the chat after (only attachments)
        if not chat.title.endswith("…"):
            return chat.title
        messages = await self.store.recent_messages(chat.id, 5)
        first = next((m for m in messages if m.role == Role.USER), None)
        parts = first.parts if first else []
        return " ".join(p.text for p in parts if isinstance(p, TextPart))
