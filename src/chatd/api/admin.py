"""Admin routes (service spec §6.4): model configs and provider keys.

Admin tokens only (403 otherwise). Provider keys are write-only: responses carry
their last four characters, never the key. A model config's `pricing` (USD per
million tokens, returned as decimal strings) prices its chats' steps; its
`provider_tools` (e.g. `["web_search"]`) are the provider-executed tools its chats
may enable, each one its provider can run (422 otherwise).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from chatd.api.deps import Admin, store_of
from chatd.api.errors import ApiError
from chatd.api.schemas import Strict, json_response
from chatd.providers import PROVIDER_TOOL_NAMES, PROVIDERS, InvalidOptions, resolve
from chatd.providers import ModelConfig as ProviderConfig
from chatd.store import ModelConfig, ProviderKey
from chatd.stream.wire import timestamp

__all__ = ["router"]

router = APIRouter(prefix="/api/chats", tags=["admin"])

# A UUID's 36 characters, the width of the id columns.
ID_LENGTH = 36
# The column is a 32-bit INTEGER; no model's window comes near 2^31 tokens.
MAX_CONTEXT_LIMIT = 2**31 - 1


# A price is a JSON number or a decimal string: the one lax field of a strict body.
Price = Annotated[Decimal, Field(strict=False, allow_inf_nan=False)]


class Pricing(Strict):
    """USD per million tokens of each kind (numbers or decimal strings); a kind left
    out costs nothing. The store checks the range."""

    input_price_per_million_tokens: Price | None = None
    output_price_per_million_tokens: Price | None = None
    cache_read_price_per_million_tokens: Price | None = None
    cache_write_price_per_million_tokens: Price | None = None


class ModelConfigIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    provider_key_id: str | None = Field(default=None, max_length=ID_LENGTH)
    options: dict[str, Any] = Field(default_factory=dict)
    context_limit: int | None = Field(default=None, ge=1, le=MAX_CONTEXT_LIMIT)
    compaction_threshold_percent: int = Field(default=70, ge=0, le=100)
    enabled: bool = True
    is_default: bool = False
    pricing: Pricing | None = None
    provider_tools: list[str] = Field(default_factory=list, max_length=8)


class ModelConfigPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    model: str | None = Field(default=None, min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    provider_key_id: str | None = Field(default=None, max_length=ID_LENGTH)
    options: dict[str, Any] | None = None
    context_limit: int | None = Field(default=None, ge=1, le=MAX_CONTEXT_LIMIT)
    compaction_threshold_percent: int | None = Field(default=None, ge=0, le=100)
    enabled: bool | None = None
    is_default: bool | None = None
    pricing: Pricing | None = None  # null: unpriced
    provider_tools: list[str] | None = Field(default=None, max_length=8)  # null: none


# PATCH fields a config cannot be without: null there is a 422, never a NULL column.
_NOT_NULL = frozenset(ModelConfigPatch.model_fields) - {
    "base_url",
    "provider_key_id",
    "context_limit",
    "pricing",
}


class ProviderKeyIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    provider: str = Field(min_length=1, max_length=64)
    api_key: str = Field(min_length=4, max_length=4096)


def _config_json(c: ModelConfig) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "provider": c.provider,
        "model": c.model,
        "base_url": c.base_url,
        "provider_key_id": c.provider_key_id,
        "options": c.options,
        "context_limit": c.context_limit,
        "compaction_threshold_percent": c.compaction_threshold_percent,
        "enabled": c.enabled,
        "is_default": c.is_default,
        "pricing": c.pricing,
        "provider_tools": c.provider_tools or [],
        "created_at": timestamp(c.created_at),
        "updated_at": timestamp(c.updated_at),
    }


def _key_json(k: ProviderKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "provider": k.provider,
        "last4": k.last4,
        "created_at": timestamp(k.created_at),
        "updated_at": timestamp(k.updated_at),
    }


def _fields(body: ModelConfigIn | ModelConfigPatch, **options: Any) -> dict[str, Any]:
    """The body's fields, prices as the store takes them (the kinds given, or None)."""
    fields = body.model_dump(**options)
    if fields.get("pricing") is not None:
        fields["pricing"] = {k: v for k, v in fields["pricing"].items() if v is not None}
    return fields


@router.get("/model-configs")
async def list_model_configs(request: Request, _admin: Admin) -> Response:
    configs = await store_of(request).list_model_configs()
    return json_response({"model_configs": [_config_json(c) for c in configs]})


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ApiError(
            422,
            "invalid_request",
            "Use one of the providers chatd knows.",
            f"unknown provider {provider!r}; known: {', '.join(sorted(PROVIDERS))}",
        )


def _check_buildable(provider: str, model: str, base_url: str | None, options: Any) -> None:
    """422 unless the provider builds a model from these fields, as the worker will.

    The same code path as a turn's (`resolve`), without a key and without I/O, so an
    option a turn could not use is refused here, naming the field.
    """
    config = ProviderConfig(
        provider=provider,
        model=model,
        base_url=base_url or "",
        key_from_env=False,
        provider_options=options,
    )
    try:
        resolve(config)
    except InvalidOptions as err:
        raise ApiError(
            422,
            "invalid_request",
            f"The {provider} provider cannot use {err.field}: fix it and retry.",
            str(err),
            extra={
                "fields": [
                    {"loc": ["body", "options", *map(str, err.path)], "message": err.problem}
                ]
            },
        ) from None
    except ValueError as err:
        raise ApiError(
            422, "invalid_request", "The provider cannot build this model config.", str(err)
        ) from None


def _check_provider_tools(provider: str, names: list[str] | None) -> None:
    """Every name is a provider tool `provider` can run (422 naming the others)."""
    runs = PROVIDERS[provider].provider_tools
    refused = [name for name in names or [] if name not in runs]
    if refused:
        raise ApiError(
            422,
            "invalid_request",
            f"Leave {', '.join(refused)} out of provider_tools: provider {provider!r} "
            "cannot run it.",
            f"provider {provider!r} runs {sorted(runs)} of the provider tools "
            f"{list(PROVIDER_TOOL_NAMES)}; refused {refused}",
        )


@router.post("/model-configs", status_code=201)
async def create_model_config(body: ModelConfigIn, request: Request, _admin: Admin) -> Response:
    _check_provider(body.provider)
    _check_buildable(body.provider, body.model, body.base_url, body.options)
    _check_provider_tools(body.provider, body.provider_tools)
    config = await store_of(request).create_model_config(**_fields(body))
    return json_response(_config_json(config), 201)


@router.get("/model-configs/{config_id}")
async def get_model_config(config_id: str, request: Request, _admin: Admin) -> Response:
    return json_response(_config_json(await store_of(request).get_model_config(config_id)))


@router.patch("/model-configs/{config_id}")
async def patch_model_config(
    config_id: str, body: ModelConfigPatch, request: Request, _admin: Admin
) -> Response:
    changes = _fields(body, exclude_unset=True)
    nulls = [name for name, value in changes.items() if value is None and name in _NOT_NULL]
    if nulls:
        raise ApiError(
            422,
            "invalid_request",
            "Leave out the fields to keep; these cannot be null.",
            ", ".join(nulls),
            extra={"fields": [{"loc": ["body", n], "message": "cannot be null"} for n in nulls]},
        )
    store = store_of(request)
    current = await store.get_model_config(config_id)
    _check_buildable(
        current.provider,
        changes.get("model", current.model),
        changes.get("base_url", current.base_url),
        changes.get("options", current.options),
    )
    if body.provider_tools:
        _check_provider_tools(current.provider, body.provider_tools)
    config = await store.update_model_config(config_id, **changes)
    return json_response(_config_json(config))


@router.delete("/model-configs/{config_id}", status_code=204)
async def delete_model_config(config_id: str, request: Request, _admin: Admin) -> Response:
    await store_of(request).delete_model_config(config_id)
    return Response(status_code=204)


@router.get("/provider-keys")
async def list_provider_keys(request: Request, _admin: Admin) -> Response:
    keys = await store_of(request).list_provider_keys()
    return json_response({"provider_keys": [_key_json(k) for k in keys]})


@router.post("/provider-keys", status_code=201)
async def create_provider_key(body: ProviderKeyIn, request: Request, _admin: Admin) -> Response:
    _check_provider(body.provider)
    key = await store_of(request).create_provider_key(body.name, body.provider, body.api_key)
    return json_response(_key_json(key), 201)


@router.delete("/provider-keys/{key_id}", status_code=204)
async def delete_provider_key(key_id: str, request: Request, _admin: Admin) -> Response:
    await store_of(request).delete_provider_key(key_id)
    return Response(status_code=204)
