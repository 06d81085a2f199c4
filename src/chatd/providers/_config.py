"""`ModelConfig`: which provider and model to call, where, and with which API key.

A config is plain data: it names its API key directly or by the environment
variable that holds it, and resolves the key only when a call is made, so a key
that disappears fails that call (kind `missing_key`) before any network I/O. This
module imports no SDK and performs no I/O beyond reading the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatd.errors import ClassifiedError, ClassifiedException, ErrorKind, with_classification

__all__ = ["InvalidOptions", "MissingAPIKey", "ModelConfig", "missing_key_error"]


class MissingAPIKey(Exception):
    """No API key for a provider that needs one (raised wrapped in a ClassifiedException)."""


class InvalidOptions(ValueError):
    """A model config's `options` its provider cannot build a model from.

    `path` locates the bad field inside the options (`("script", 0, "error")`), so an
    admin route can name it; the text reads `options.script[0].error: <problem>`.
    """

    def __init__(self, path: tuple[str | int, ...], problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{self.field}: {problem}")

    @property
    def field(self) -> str:
        """The dotted name of the bad field: `options.script[0].error.status_code`."""
        name = "options"
        for part in self.path:
            name += f"[{part}]" if isinstance(part, int) else f".{part}"
        return name


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One configured model.

    `provider` is a registry name (`openai`, `openai-chat`, `openai-compat`, `ollama`,
    `anthropic`, `google`, `scripted`, …; see `chatd.providers.PROVIDERS`). The API
    key is `api_key` when set, else the environment variable `api_key_env`, else the
    provider's usual variable (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, …).
    `context_limit` > 0 overrides the context window chatd knows for the model.
    `provider_options` are sent with every request as extra body fields (for
    example `{"reasoning": {"effort": "low", "summary": "auto"}}` for OpenAI);
    `headers` are sent as extra HTTP headers.
    """

    provider: str
    model: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    api_key_env: str = ""
    # False: only `api_key` counts. A key stored for a chat that has since been
    # deleted must fail as `missing_key`, not fall back to the server's environment.
    key_from_env: bool = True
    context_limit: int = 0
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    # Extra HTTP headers on every request (gateways, OpenRouter's HTTP-Referer/X-Title).
    headers: Mapping[str, str] = field(default_factory=dict)
    # Seconds the SDK waits for a response (headers and each read). The loop's
    # startup guard cuts a silent provider sooner; this bounds a stalled stream.
    timeout: float = 600.0

    @classmethod
    def parse(cls, spec: str, **fields: Any) -> ModelConfig:
        """`"anthropic:claude-sonnet-4-5"` → a config; the model part may contain colons."""
        provider, sep, model = spec.partition(":")
        if not sep or not provider.strip() or not model.strip():
            raise ValueError(f"model spec must look like 'provider:model', got {spec!r}")
        return cls(provider=provider.strip().lower(), model=model.strip(), **fields)

    @property
    def spec(self) -> str:
        return f"{self.provider}:{self.model}"

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def resolve_api_key(self, default_envs: tuple[str, ...] = ()) -> str:
        """The key to send, or "" when none is configured or set in the environment."""
        if self.api_key.strip():
            return self.api_key.strip()
        if not self.key_from_env:
            return ""
        names = (self.api_key_env,) if self.api_key_env else default_envs
        for name in names:
            value = os.environ.get(name, "").strip()
            if value:
                return value
        return ""


def missing_key_error(
    provider: str, config: ModelConfig, envs: tuple[str, ...]
) -> ClassifiedException:
    """The `missing_key` failure for a provider whose key is gone (before any I/O)."""
    names = (config.api_key_env,) if config.api_key_env else envs
    where = "api_key in the model config"
    if names and config.key_from_env:
        where = f"{' or '.join(names)} or {where}"
    error = MissingAPIKey(f"no API key for {config.spec}: set {where}")
    return with_classification(
        error,
        ClassifiedError(
            kind=ErrorKind.MISSING_KEY,
            provider=provider,
            retryable=False,
            detail=str(error),
        ),
    )
