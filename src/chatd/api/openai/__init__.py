"""chatd's OpenAI-compatible front door (docs/openai.md): `/v1/responses`,
`/v1/chat/completions` and `/v1/models` over chatd's chats, for every OpenAI SDK.

The routes meet the rest of chatd only as the other routes do: the store's
transitions and reads, and the chats' streams. Their errors take OpenAI's shape, so
they are described by their own OpenAPI document (`GET /v1/openapi.json`), not by
chatd's, whose every error is chatd's shape.
"""

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi

from chatd import __version__
from chatd.api.openai import chat_completions, models, responses

__all__ = ["router"]

_ROUTERS = (models.router, responses.router, chat_completions.router)

router = APIRouter()
for _router in _ROUTERS:
    router.include_router(_router, include_in_schema=False)

_document: dict[str, Any] = {}


@router.get("/v1/openapi.json", include_in_schema=False)
async def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the /v1 routes."""
    if not _document:
        _document.update(
            get_openapi(
                title="chatd OpenAI-compatible API",
                version=__version__,
                routes=[route for r in _ROUTERS for route in r.routes],
            )
        )
    return _document
