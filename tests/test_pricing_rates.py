"""The cached per-million rates every ingest path prices with give what genai-prices' calc_price gives."""

from __future__ import annotations

import random

import pytest
from genai_prices import Usage, calc_price

from llmpulse.core.usage.pricing import PRICE_PROVIDER, Pricing

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash"),
    ("mistral", "mistral-small-latest"),  # prices that changed on a date: the one in force today
]


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_linear_rates_price_as_calc_price_does(provider, model):
    pricing = Pricing()
    assert pricing.rates(provider, model) is not None, "priced by a multiply-add, not calc_price per record"
    rng = random.Random(model)
    for _ in range(50):
        tin, tout = rng.randint(1, 150_000), rng.randint(0, 5_000)
        cached = rng.choice([0, tin // 3])
        expected = calc_price(
            Usage(input_tokens=tin, output_tokens=tout, cache_read_tokens=cached or None),
            model,
            provider_id=PRICE_PROVIDER.get(provider, provider),
        ).total_price
        assert pricing.cost(provider, model, tin, tout, cached) == pytest.approx(float(expected), rel=1e-9)
