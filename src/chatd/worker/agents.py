"""A running chat's children, reached through the store: the `AgentHost` of the agent tools.

A child is an ordinary chat with `parent_id` set: the same owner, the parent's
tools (less the client tools no one would answer), and the parent's model unless
`spawn_agent` names another enabled one. Any replica runs it through the normal
acquisition; `wait_agent` is answered by the store (chatd.store._agents).
"""

from __future__ import annotations

from typing import Any

from chatd.store import (
    BusyBehavior,
    Chat,
    InvalidRequest,
    NotFound,
    Store,
    TransitionRejected,
)
from chatd.tools import AgentError
from chatd.types import TextPart

__all__ = ["ChildAgents", "child_tool_config"]


def child_tool_config(parent: dict[str, Any]) -> dict[str, Any]:
    """The parent's `tools` for a child: everything but the client (dynamic) tools and
    the policies naming them, which only the parent's client could answer."""
    dynamic = {spec.get("name") for spec in parent.get("dynamic") or () if isinstance(spec, dict)}
    config = dict(parent)
    if "dynamic" in config:
        config["dynamic"] = []
    for key in ("stop_after", "exclusive"):
        if key in config:
            config[key] = [name for name in config[key] if name not in dynamic]
    return config


class ChildAgents:
    """The agent tools' host for one run of `parent`."""

    def __init__(self, store: Store, parent: Chat) -> None:
        self.store = store
        self.parent = parent

    async def spawn(self, prompt: str, *, model: str | None, title: str | None) -> dict[str, Any]:
        config_id = await self._model_config_id(model)
        try:
            child = await self.store.create_chat(
                self.parent.owner_id,
                [TextPart(prompt)],
                title=title,
                model_config_id=config_id,
                tool_config=child_tool_config(self.parent.tool_config or {}),
                parent_id=self.parent.id,
            )
        except InvalidRequest as err:
            raise AgentError(f"spawn_agent: {err.message}") from None
        return {
            "id": child.id,
            "title": child.title,
            "status": child.status.value,
            "note": "The agent is working; call wait_agent for its answer.",
        }

    async def message(self, agent_id: str, text: str) -> dict[str, Any]:
        await self._child(agent_id)
        try:
            sent = await self.store.send_message(
                agent_id,
                [TextPart(text)],
                busy_behavior=BusyBehavior.QUEUE,
                created_by=self.parent.owner_id,
            )
        except TransitionRejected as err:
            raise AgentError(f"message_agent: {err.message}") from None
        return {
            "id": agent_id,
            "status": sent.chat.status.value,
            "queued": sent.queued is not None,
        }

    async def interrupt(self, agent_id: str) -> dict[str, Any]:
        child = await self._child(agent_id)
        try:
            child = await self.store.interrupt(agent_id)
        except TransitionRejected:
            raise AgentError(
                f"interrupt_agent: the agent is not working (it is {child.status.value})."
            ) from None
        return {"id": agent_id, "status": child.status.value}

    async def list(self) -> list[dict[str, Any]]:
        return await self.store.child_reports(self.parent.id)

    async def _child(self, agent_id: str) -> Chat:
        try:
            chat = await self.store.get_chat(agent_id)
        except NotFound:
            chat = None
        if chat is None or chat.parent_id != self.parent.id:
            raise AgentError(f"No agent of this chat has the id {agent_id!r}; see list_agents.")
        return chat

    async def _model_config_id(self, model: str | None) -> str | None:
        """The parent's model config, or the enabled one `model` names (id, name or model)."""
        if model is None:
            return self.parent.model_config_id
        configs = [c for c in await self.store.list_model_configs() if c.enabled]
        for key in ("id", "name", "model"):
            found = [c for c in configs if getattr(c, key) == model]
            if found:
                return found[0].id
        names = ", ".join(sorted({c.model for c in configs})) or "none"
        raise AgentError(f"spawn_agent: no enabled model is called {model!r}; enabled: {names}.")
