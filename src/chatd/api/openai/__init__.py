"""chatd's OpenAI-compatible front door (docs/openai.md): `/v1/responses`,
`/v1/chat/completions` and `/v1/models` over chatd's chats, for every OpenAI SDK.

The routes meet the rest of chatd only as the other routes do: the store's
transitions and reads, and the chats' streams. Their errors take OpenAI's shape.
"""

from fastapi import APIRouter

from chatd.api.openai import chat_completions, models, responses

__all__ = ["router"]

router = APIRouter()
router.include_router(models.router)
router.include_router(responses.router)
router.include_router(chat_completions.router)
