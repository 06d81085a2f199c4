"""Chat titles written by a model (service spec §4.10).

After a chat is created, the service asks a model for a short title for its
first message: plain text, at most 8 words and under 128 characters (the bounds
of upstream's title prompt), within 10 s. Whatever the model answers is cleaned
up (quotes, a "Title:" prefix, trailing punctuation, extra lines); an empty or
failed answer leaves the default title. Never counted in the loop's metrics and
never fails a chat.
"""

from __future__ import annotations

import asyncio
import re

from chatd.loop import Call, Model, ModelSettings
from chatd.types import Message, Role, TextPart

__all__ = ["TITLE_PROMPT", "TITLE_TIMEOUT", "clean_title", "generate_title"]

TITLE_PROMPT = (
    "Write a title for the conversation that starts with the user's message below: "
    "plain text, at most 8 words, no quotes, no trailing punctuation. "
    "Answer with the title only."
)
TITLE_TIMEOUT = 10.0
MAX_WORDS = 8
MAX_CHARS = 127
# The first message is enough to name a chat; a long paste is cut to this.
MAX_INPUT_CHARS = 2000

_PREFIX = re.compile(r"^\s*(title\s*:\s*)", re.IGNORECASE)
_QUOTES = "\"'`“”‘’*#"


def clean_title(text: str) -> str | None:
    """A model's answer as a title, or None when nothing usable is left."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    title = _PREFIX.sub("", lines[0]).strip().strip(_QUOTES).strip()
    title = " ".join(title.split()[:MAX_WORDS])
    if len(title) > MAX_CHARS:
        title = title[:MAX_CHARS].rsplit(" ", 1)[0]
    title = title.rstrip(".!?,;: ").strip(_QUOTES).strip()
    return title or None


async def generate_title(model: Model, first_message: str) -> str | None:
    """Ask `model` for a title; None when it fails, times out or answers nothing."""
    call = Call(
        prompt=[
            Message(Role.SYSTEM, [TextPart(TITLE_PROMPT)]),
            Message(Role.USER, [TextPart(first_message[:MAX_INPUT_CHARS])]),
        ],
        tools=[],
        settings=ModelSettings(max_output_tokens=128),  # room for reasoning models
    )
    async with asyncio.timeout(TITLE_TIMEOUT):
        response = await model.generate(call)
    text = "".join(p.text for p in response.content if isinstance(p, TextPart))
    return clean_title(text)
