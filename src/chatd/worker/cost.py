"""What a step cost: its usage at its model config's prices, in micro-USD.

Prices are USD per million tokens, so a token count times its price is already in
millionths of a dollar. Input, output, cache-read and cache-write tokens are priced
apart (chatd's `Usage` keeps cached tokens out of `input_tokens`); reasoning tokens
are part of the output and are not priced again. The sum is rounded up to a whole
micro-USD, as upstream's chatcost does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from chatd.store import PRICE_KEYS
from chatd.types import Usage

__all__ = ["cost_micros"]


def cost_micros(usage: Usage, pricing: Mapping[str, str] | None) -> int | None:
    """The step's cost, or None when its model config has no prices (unpriced)."""
    if not pricing:
        return None
    counts = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_creation_tokens,
    )
    total = sum(
        (
            max(tokens, 0) * Decimal(pricing[key])
            for tokens, key in zip(counts, PRICE_KEYS, strict=True)
            if key in pricing
        ),
        Decimal(0),
    )
    return math.ceil(total)
