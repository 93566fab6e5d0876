"""What a record costs, priced at ingest from genai-prices' bundled table (never the network unless
`[prices] auto_update = true`), with config overrides first and local providers free.

A model the table does not know costs None — "price unknown" — and is counted as such everywhere; it
is never a silent $0.
"""

from __future__ import annotations

from importlib import metadata
from typing import Iterable

from decimal import Decimal

from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from core.usage.config import PriceConfig

# Our provider ids that genai-prices spells differently.
PRICE_PROVIDER = {"gemini": "google", "moonshot": "moonshotai", "xai": "x-ai"}


def price_table_version() -> str:
    """The price data's version: genai-prices ships its table inside the package."""
    try:
        return f"genai-prices {metadata.version('genai-prices')} bundled"
    except metadata.PackageNotFoundError:
        return "genai-prices bundled"


class Pricing:
    def __init__(self, prices: PriceConfig | None = None, local_providers: Iterable[str] = ()):
        self.prices = prices or PriceConfig()
        self.local = set(local_providers)
        # genai-prices caches the models it finds but not the ones it does not: remember those, or every
        # record of an unknown model pays a full search of the table (measured: ~0.25 ms a record).
        self._unknown: set[tuple[str, str]] = set()
        self._rates: dict[tuple[str, str], tuple | None] = {}
        if self.prices.auto_update:
            from genai_prices import UpdatePrices
            self._updater = UpdatePrices()
            self._updater.start(wait=False)

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> float | None:
        """USD for one request, or None when the price is unknown. input_tokens includes cached ones."""
        if provider in self.local:
            return 0.0
        override = self.prices.overrides.get((provider, model))
        if override is not None:
            cached_rate = override.cache_read if override.cache_read is not None else override.input
            write_rate = override.cache_write if override.cache_write is not None else override.input
            fresh = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
            return (fresh * override.input + cache_read_tokens * cached_rate + cache_write_tokens * write_rate
                    + output_tokens * override.output) / 1e6
        if (provider, model) in self._unknown:
            return None
        rates = self._rates.get((provider, model), False)
        if rates is False:
            rates = self._rates[(provider, model)] = self._linear_rates(provider, model)
        if rates is not None:
            rin, rout, rcr, rcw, below = rates
            if input_tokens < below and (rcr is not None or not cache_read_tokens) \
                    and (rcw is not None or not cache_write_tokens):
                fresh = input_tokens - cache_read_tokens - cache_write_tokens
                return (fresh * rin + output_tokens * rout + cache_read_tokens * (rcr or 0)
                        + cache_write_tokens * (rcw or 0)) / 1e6
        try:
            calc = calc_price(Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                                    cache_read_tokens=cache_read_tokens or None,
                                    cache_write_tokens=cache_write_tokens or None),
                              model, provider_id=PRICE_PROVIDER.get(provider, provider))
        except (LookupError, ValueError):
            self._unknown.add((provider, model))
            return None
        return float(calc.total_price)

    def _linear_rates(self, provider: str, model: str) -> tuple | None:
        """Per-million rates when the model's price is plain per-token (tiers: their base price, valid
        below the first tier), so a record costs a multiply-add instead of a full calc_price (~0.2 ms).
        None: price with calc_price every time. tests/test_usage checks both ways agree."""
        try:
            _, info = get_snapshot().find_provider_model(model, None, PRICE_PROVIDER.get(provider, provider), None)
        except (LookupError, ValueError):
            return None
        prices = getattr(info, "prices", None)
        if not isinstance(prices, ModelPrice):
            return None
        below = float("inf")
        out = []
        for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"):
            value = getattr(prices, name, None)
            if isinstance(value, TieredPrices):
                below = min(below, *(t.start for t in value.tiers)) if value.tiers else below
                value = value.base
            if value is not None and not isinstance(value, (Decimal, int, float)):
                return None
            out.append(None if value is None else float(value))
        if out[0] is None or out[1] is None:
            return None
        return (out[0], out[1], out[2], out[3], below)

    def known(self, provider: str, model: str) -> bool:
        return self.cost(provider, model, 1000, 1000) is not None
