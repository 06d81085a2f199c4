"""`/v1/models`: the model configs a token may use, as OpenAI lists models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatd.api.deps import User, app_state
from chatd.api.errors import ApiError
from chatd.api.openai._errors import OpenAIRoute
from chatd.api.resources import model_config_named
from chatd.api.schemas import json_response
from chatd.api.state import AppState
from chatd.store import ModelConfig

__all__ = ["DEFAULT_MODEL", "model_config", "router"]

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)

#: What `model` names when no config has this name: the deployment's default config.
DEFAULT_MODEL = "default"


async def model_config(state: AppState, reference: str) -> ModelConfig | None:
    """The enabled config `model` names (as chatd's own routes resolve it), or None for
    the deployment's default (`"default"`); 400 for anything else."""
    try:
        return await model_config_named(state, reference)
    except ApiError:
        if reference != DEFAULT_MODEL:
            raise
    return None


def _model(config: ModelConfig) -> dict[str, Any]:
    return {
        "id": config.name,
        "object": "model",
        "created": int(config.created_at.timestamp()),
        "owned_by": config.provider,
    }


@router.get("/models")
async def list_models(request: Request, user: User) -> Response:
    """Every enabled model config, by name (what `model` takes)."""
    configs = await app_state(request).store.list_model_configs()
    return json_response({"object": "list", "data": [_model(c) for c in configs if c.enabled]})


@router.get("/models/{model}")
async def retrieve_model(model: str, request: Request, user: User) -> Response:
    for config in await app_state(request).store.list_model_configs():
        if config.enabled and config.name == model:
            return json_response(_model(config))
    raise ApiError.not_found("model")
