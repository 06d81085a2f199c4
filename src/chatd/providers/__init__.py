"""Model providers: one module per provider, each turning its SDK's stream into StreamParts.

`resolve("anthropic:claude-sonnet-4-5")` (or a `ModelConfig`) builds a model; the
provider's module, and so its SDK, is imported only then: importing
`chatd.providers` imports no SDK. See docs/providers.md.
"""

from chatd.providers._config import MissingAPIKey, ModelConfig
from chatd.providers._registry import PROVIDERS, Provider, resolve

__all__ = ["PROVIDERS", "MissingAPIKey", "ModelConfig", "Provider", "resolve"]
