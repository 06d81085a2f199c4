"""`chatd.worker.cost.cost_micros`: a step's usage at its config's prices (upstream's
chatcost cases, in chatd's Usage, where cached tokens are not part of the input)."""

from __future__ import annotations

import pytest

from chatd.types import Usage
from chatd.worker.cost import cost_micros

IN, OUT, READ, WRITE = (
    "input_price_per_million_tokens",
    "output_price_per_million_tokens",
    "cache_read_price_per_million_tokens",
    "cache_write_price_per_million_tokens",
)


@pytest.mark.parametrize(
    ("usage", "pricing", "expected"),
    [
        pytest.param(Usage(input_tokens=1000), None, None, id="no prices: unpriced"),
        pytest.param(Usage(input_tokens=1000), {}, None, id="empty prices: unpriced"),
        pytest.param(Usage(input_tokens=1), {IN: "0.01"}, 1, id="a fraction rounds up"),
        pytest.param(Usage(input_tokens=1000), {IN: "3"}, 3000, id="input"),
        pytest.param(Usage(output_tokens=500), {OUT: "15"}, 7500, id="output"),
        pytest.param(
            Usage(output_tokens=500, reasoning_tokens=200),
            {OUT: "15"},
            7500,
            id="reasoning is part of the output, not priced again",
        ),
        pytest.param(Usage(cache_read_tokens=10000), {READ: "0.3"}, 3000, id="cache read"),
        pytest.param(Usage(cache_creation_tokens=5000), {WRITE: "3.75"}, 18750, id="cache write"),
        pytest.param(
            Usage(
                input_tokens=101,
                output_tokens=201,
                reasoning_tokens=52,
                cache_read_tokens=1005,
                cache_creation_tokens=33,
                total_tokens=1391,
            ),
            {IN: "1.23", OUT: "4.56", READ: "0.7", WRITE: "7.89"},
            2005,
            id="every kind, summed before rounding",
        ),
        pytest.param(
            Usage(input_tokens=1234, output_tokens=999, cache_read_tokens=500),
            {IN: "2.5"},
            3085,
            id="only priced kinds count",
        ),
        pytest.param(Usage(), {IN: "3"}, 0, id="no tokens at a price cost 0"),
    ],
)
def test_cost_micros_prices_each_kind_and_rounds_up(
    usage: Usage, pricing: dict[str, str] | None, expected: int | None
) -> None:
    assert cost_micros(usage, pricing) == expected
