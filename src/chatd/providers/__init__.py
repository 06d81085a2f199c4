"""Model providers: one module per provider, each turning its SDK's stream into StreamParts.

Modules are imported lazily; importing `chatd.providers` imports no SDK.
"""

__all__: list[str] = []
