"""Uploaded files reach every provider in its native form, pinned by golden request fixtures.

Images and PDFs go as the SDK's image/document blocks (base64), text files inline
as text. Each golden file under tests/fixtures/providers/<provider>/files_request.json
is the user turn of the request body the official SDK sent to the replay server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chatd.loop import Call, Model
from chatd.types import FilePart, Message, Role, TextPart
from tests.providers.helpers import drain
from tests.providers.replay import FIXTURES, ReplayServer
from tests.providers.test_anthropic import claude
from tests.providers.test_google import gemini
from tests.providers.test_openai_chat import openai_chat
from tests.providers.test_openai_responses import gpt

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PDF = b"%PDF-1.4\n%%EOF\n"
FILES = Call(
    prompt=[
        Message(
            Role.USER,
            [
                FilePart(PNG, "image/png", "shot.png", file_id="f-png"),
                FilePart(PDF, "application/pdf", "paper.pdf", file_id="f-pdf"),
                FilePart("todo: ship it ☕\n".encode(), "text/plain", "notes.txt", file_id="f-txt"),
                TextPart("What are these?"),
            ],
        )
    ]
)

# provider fixture dir, the model against the replay server, the reply to replay, the
# user turn in the request body
CASES: dict[str, tuple[Callable[[ReplayServer], Model], str, Callable[[Any], Any]]] = {
    "anthropic": (claude, "text", lambda body: body["messages"]),
    "openai_chat": (openai_chat, "text", lambda body: body["messages"]),
    "openai_responses": (gpt, "text", lambda body: body["input"]),
    "google": (gemini, "text", lambda body: body["contents"]),
}


@pytest.mark.parametrize("provider", sorted(CASES))
async def test_uploaded_files_go_as_native_blocks_and_text_files_inline(
    server: ReplayServer, provider: str
) -> None:
    make, reply, user_turn = CASES[provider]
    server.enqueue(provider, reply)
    await drain(make(server), FILES)
    sent = user_turn(server.requests[0].json())
    golden = json.loads((FIXTURES / provider / "files_request.json").read_text(encoding="utf-8"))
    assert sent == golden
