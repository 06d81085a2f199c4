"""Model providers: one module per provider, each turning its SDK's stream into StreamParts.

`resolve("anthropic:claude-sonnet-4-5")` (or a `ModelConfig`) builds a model; the
provider's module, and so its SDK, is imported only then: importing
`chatd.providers` imports no SDK. `load_model_configs()` reads model configs
from TOML and `check_model()` proves one works with a single tiny request. See
docs/providers.md.
"""

from chatd.providers._check import (
    CheckResult,
    check_model,
    load_model_configs,
    model_config_from_mapping,
)
from chatd.providers._config import InvalidOptions, MissingAPIKey, ModelConfig
from chatd.providers._registry import (
    PROVIDER_TOOL_NAMES,
    PROVIDERS,
    Provider,
    provider_tool_definitions,
    resolve,
)

__all__ = [
    "PROVIDERS",
    "PROVIDER_TOOL_NAMES",
    "CheckResult",
    "InvalidOptions",
    "MissingAPIKey",
    "ModelConfig",
    "Provider",
    "check_model",
    "load_model_configs",
    "model_config_from_mapping",
    "provider_tool_definitions",
    "resolve",
]
