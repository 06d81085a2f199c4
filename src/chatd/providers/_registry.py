"""The provider registry: `"provider:model"` strings to models, importing each SDK only when used.

A provider entry names the module and class that implement it plus its defaults
(the provider id reported in errors and metrics, a base URL, the environment
variables holding its key, whether a key is needed at all). A new provider is one
module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from chatd.protocols import Model, ToolDefinition
from chatd.providers._config import ModelConfig
from chatd.providers._scripted_options import scripted_model

__all__ = [
    "PROVIDERS",
    "PROVIDER_TOOL_NAMES",
    "Provider",
    "provider_tool_definitions",
    "resolve",
]

#: The provider-executed tools a chat may ask for (`"tools": {"provider": [...]}`);
#: each provider that can run one maps it to its own tool type below.
PROVIDER_TOOL_NAMES = ("web_search",)


@dataclass(frozen=True, slots=True)
class Provider:
    """How to build models of one registry name."""

    module: str
    cls: str
    provider_id: str = ""  # defaults to the registry name
    base_url: str = ""
    key_envs: tuple[str, ...] = ()
    key_required: bool = True
    description: str = ""
    # chatd's provider tool name → this provider's tool type ("<provider>.<type>", see
    # ToolDefinition.provider_type); a tool left out is one the provider cannot run.
    provider_tools: Mapping[str, str] = field(default_factory=dict)


_OPENAI_KEY = ("OPENAI_API_KEY",)
_CHAT = "chatd.providers.openai_chat"
_COMPAT = "openai-compat"

PROVIDERS: dict[str, Provider] = {
    "anthropic": Provider(
        "chatd.providers.anthropic",
        "AnthropicModel",
        key_envs=("ANTHROPIC_API_KEY",),
        description="Anthropic Messages API",
        provider_tools={"web_search": "anthropic.web_search_20250305"},
    ),
    "google": Provider(
        "chatd.providers.google",
        "GoogleModel",
        key_envs=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        description="Google Gemini API (google-genai)",
        provider_tools={"web_search": "google.google_search"},
    ),
    "llamacpp": Provider(
        _CHAT,
        "OpenAIChatModel",
        _COMPAT,
        "http://localhost:8080/v1",
        key_required=False,
        description="llama.cpp server (OpenAI-compatible)",
    ),
    "lmstudio": Provider(
        _CHAT,
        "OpenAIChatModel",
        _COMPAT,
        "http://localhost:1234/v1",
        key_required=False,
        description="LM Studio (OpenAI-compatible)",
    ),
    "ollama": Provider(
        _CHAT,
        "OpenAIChatModel",
        _COMPAT,
        "http://localhost:11434/v1",
        key_required=False,
        description="Ollama (OpenAI-compatible)",
    ),
    "openai": Provider(
        "chatd.providers.openai_responses",
        "OpenAIResponsesModel",
        key_envs=_OPENAI_KEY,
        description="OpenAI Responses API",
        provider_tools={"web_search": "openai.web_search"},
    ),
    "openai-chat": Provider(
        _CHAT,
        "OpenAIChatModel",
        "openai",
        key_envs=_OPENAI_KEY,
        description="OpenAI Chat Completions API",
    ),
    "openai-compat": Provider(
        _CHAT,
        "OpenAIChatModel",
        key_envs=_OPENAI_KEY,
        key_required=False,
        description="any OpenAI-compatible Chat Completions server (set base_url)",
    ),
    "openrouter": Provider(
        _CHAT,
        "OpenAIChatModel",
        "openrouter",
        "https://openrouter.ai/api/v1",
        key_envs=("OPENROUTER_API_KEY",),
        description="OpenRouter (OpenAI-compatible)",
    ),
    "scripted": Provider(
        "chatd.providers.scripted",
        "ScriptedModel",
        key_required=False,
        description="chatd's offline scripted model (no network, no key)",
        provider_tools={"web_search": "scripted.web_search"},
    ),
    "vllm": Provider(
        _CHAT,
        "OpenAIChatModel",
        _COMPAT,
        "http://localhost:8000/v1",
        key_required=False,
        description="vLLM (OpenAI-compatible)",
    ),
}


def provider_tool_definitions(provider: str, names: Iterable[str]) -> list[ToolDefinition]:
    """The definitions of the provider tools `names` that `provider` can run, in order;
    names it cannot run (or that are unknown) are left out."""
    entry = PROVIDERS.get(provider)
    types = entry.provider_tools if entry is not None else {}
    return [
        ToolDefinition(name, provider_type=types[name])
        for name in dict.fromkeys(names)
        if name in types
    ]


def resolve(spec: str | ModelConfig, *, config: ModelConfig | None = None) -> Model:
    """A model for `"provider:model"` (or a full `ModelConfig`), ready to stream.

    With both, `spec` names provider and model and `config` supplies the rest
    (base URL, key, options). Only the chosen provider's SDK is imported. No network
    I/O happens here; a missing key surfaces on the first call as `missing_key`.
    Raises `ValueError` for a config no model can be built from: an unknown provider,
    a missing base URL, or options the provider refuses (`InvalidOptions`, naming
    the field).
    """
    if isinstance(spec, ModelConfig):
        resolved = spec
    else:
        parsed = ModelConfig.parse(spec)
        resolved = (
            parsed
            if config is None
            else config.replace(provider=parsed.provider, model=parsed.model)
        )
    entry = PROVIDERS.get(resolved.provider)
    if entry is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider {resolved.provider!r}; known providers: {known}")
    if entry.base_url and not resolved.base_url:
        resolved = resolved.replace(base_url=entry.base_url)
    if resolved.provider == _COMPAT and not resolved.base_url:
        raise ValueError("provider 'openai-compat' needs base_url (the server's /v1 URL)")
    if resolved.provider == "scripted":
        return scripted_model(resolved.model, resolved.provider_options)
    cls: Any = getattr(importlib.import_module(entry.module), entry.cls)
    return cast(
        Model,
        cls(
            resolved,
            provider=entry.provider_id or resolved.provider,
            key_envs=entry.key_envs,
            key_required=entry.key_required,
        ),
    )
