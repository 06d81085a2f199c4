"""Model configs from a TOML file, and `check_model()`: one tiny request to prove a config works.

This is what `chatd models` (list, `--check`) is built on. Loading reads a file and
the environment only; checking makes exactly one small request and describes any
failure as a classified error instead of raising it.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from chatd.errors import ClassifiedError, classify
from chatd.protocols import Call, Model, ModelSettings
from chatd.providers._config import ModelConfig
from chatd.types import FinishReason, Message, Role, StreamPartType, TextPart

__all__ = ["CheckResult", "check_model", "load_model_configs", "model_config_from_mapping"]

# 16: the smallest max_output_tokens every provider accepts (OpenAI's Responses
# API rejects less); the check wants an answer, not an essay.
_CHECK_MAX_TOKENS = 16
_FIELDS = frozenset(f.name for f in fields(ModelConfig))


def model_config_from_mapping(entry: Mapping[str, Any]) -> ModelConfig:
    """A config from a TOML table: `spec = "provider:model"` or `provider` and `model`."""
    values = dict(entry)
    spec = values.pop("spec", None)
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown model config field(s): {', '.join(sorted(unknown))}")
    if spec is not None:
        parsed = ModelConfig.parse(str(spec))
        values.setdefault("provider", parsed.provider)
        values.setdefault("model", parsed.model)
    if not values.get("provider") or not values.get("model"):
        raise ValueError("a model config needs `spec` or both `provider` and `model`")
    values["provider"] = str(values["provider"]).lower()
    return ModelConfig(**values)


def load_model_configs(path: str | Path) -> dict[str, ModelConfig]:
    """Every `[models.<name>]` table of a TOML file, by name, in file order."""
    with Path(path).open("rb") as file:
        document = tomllib.load(file)
    tables = document.get("models", {})
    if not isinstance(tables, Mapping):
        raise ValueError(f"{path}: `models` must be a table of model configs")
    configs: dict[str, ModelConfig] = {}
    for name, entry in tables.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{path}: models.{name} must be a table")
        try:
            configs[name] = model_config_from_mapping(entry)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: models.{name}: {err}") from err
    return configs


@dataclass(frozen=True, slots=True)
class CheckResult:
    """How a one-request check went: `error` is None when the model answered."""

    provider: str
    model: str
    seconds: float
    text: str = ""
    finish_reason: FinishReason | None = None
    error: ClassifiedError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def check_model(model: Model, prompt: str = "Reply with the word OK.") -> CheckResult:
    """Send one tiny request; never raises for provider failures (they land in `error`)."""
    started = time.monotonic()
    call = Call(
        prompt=[Message(Role.USER, [TextPart(prompt)])],
        settings=ModelSettings(max_output_tokens=_CHECK_MAX_TOKENS),
    )
    text: list[str] = []
    finish: FinishReason | None = None
    try:
        stream = await model.stream(call)
        async for part in stream:
            if part.type == StreamPartType.TEXT_DELTA:
                text.append(part.delta)
            elif part.type == StreamPartType.FINISH:
                finish = part.finish_reason
    except Exception as err:
        return CheckResult(
            model.provider,
            model.model,
            time.monotonic() - started,
            error=classify(err, provider=model.provider),
        )
    finally:
        aclose = getattr(model, "aclose", None)
        if aclose is not None:
            await aclose()
    return CheckResult(
        model.provider, model.model, time.monotonic() - started, "".join(text), finish
    )
