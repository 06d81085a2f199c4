"""Put a fresh chat into any execution state of spec §2.2."""

from __future__ import annotations

from chatd.store import Chat, Fence, Store
from tests.store.helpers import (
    error_chat,
    new_chat,
    requires_action_chat,
    running_chat,
    send,
    waiting_chat,
)

ALL_STATES = ["W", "P0", "P1", "R0", "R1", "I0", "I1", "A0", "A1", "E0", "E1", "XW", "XE0", "XE1"]


async def make_state(store: Store, state: str) -> tuple[Chat, Fence | None]:
    """A chat in `state` (upstream shorthand), with the runner's fence when it has an owner."""
    archived = state.startswith("X")
    code = state.removeprefix("X")
    letter, queued = code[0], int(code[1:] or 0)
    fence: Fence | None = None
    if letter == "W":
        chat = await waiting_chat(store)
    elif letter == "P":
        _, chat = await new_chat(store)
        for index in range(queued):
            chat = await send(store, chat.id, f"queued {index}")
    elif letter in "RI":
        chat, fence = await running_chat(store, queued)
        if letter == "I":
            chat = await store.interrupt(chat.id)
    elif letter == "A":
        chat, _ = await requires_action_chat(store, queued)
    else:
        chat = await error_chat(store, queued)
    if archived:
        chat = await store.set_archived(chat.id, True)
    assert chat.state == state, (chat.state, state)
    return chat, fence
