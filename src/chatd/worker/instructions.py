"""A run's instructions: the deployment's, the owner's and the workspace's `AGENTS.md`.

They are joined, in that order, into one system message placed before the chat's
own system prompt (the first row of its history). They are read at the start of
every run and never stored in history, so an admin's or a user's change applies
from the next run on and survives compactions. `AGENTS.md` is read only when the
run has built-in tools (the workspace is the chat's to use then), through the
tools' confined file access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatd.store import Chat, User
from chatd.tools import Workspace, read_agents_md
from chatd.types import Message, Role, TextPart

__all__ = ["Instructions", "gather_instructions"]


@dataclass(frozen=True, slots=True)
class Instructions:
    """The joined text (empty: none) and the sources applied, chat's own included."""

    text: str
    sources: tuple[str, ...]

    def prepend(self, messages: Sequence[Message]) -> list[Message]:
        """`messages` with the instructions as a leading system message."""
        if not self.text:
            return list(messages)
        return [Message(Role.SYSTEM, [TextPart(self.text)]), *messages]


async def gather_instructions(
    chat: Chat, owner: User, deployment: str | None, workspace: Workspace | None
) -> Instructions:
    """The run's instructions from what `Store.instructions_for` read; `workspace`:
    the chat's, when the run has built-in tools (else no `AGENTS.md`)."""
    agents_md = await read_agents_md(workspace) if workspace is not None else None
    found = [
        ("deployment", deployment),
        ("user", owner.instructions),
        ("agents_md", _workspace_context(agents_md) if agents_md else None),
    ]
    parts = [(source, text) for source, text in found if text]
    sources = [source for source, _text in parts]
    if chat.system_prompt:
        sources.append("chat")
    text = "\n\n".join(text for _source, text in parts)
    return Instructions(text, tuple(sources))


def _workspace_context(text: str) -> str:
    # Named, so the model knows these came from the repository, not from the operator.
    return f"<workspace-context>\nSource: AGENTS.md\n{text}\n</workspace-context>"
