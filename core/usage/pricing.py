"""What a record costs, priced at ingest from genai-prices' bundled table (never the network unless
`[prices] auto_update = true`), with config overrides first and local providers free.

A model the table does not know costs None — "price unknown" — and is counted as such everywhere; it
is never a silent $0.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from llmpulse.core.usage.config import PriceConfig

# genai-prices (its table, pydantic and a second HTTP stack: ~0.25 s) is imported when something is
# priced, not when this module is: commands that never price (check, alerts, budgets) start without it.

# Our provider ids that genai-prices spells differently.
PRICE_PROVIDER = {"gemini": "google", "moonshot": "moonshotai", "xai": "x-ai"}


def price_table_version() -> str:
    """The price data's version: genai-prices ships its table inside the package."""
    from importlib import metadata  # ~25 ms: only when a command prints it

    try:
        return f"genai-prices {metadata.version('genai-prices')} bundled"
    except metadata.PackageNotFoundError:
        return "genai-prices bundled"


# Per-million rates (input, output, cache_read, cache_write, valid while input_tokens < this): a record
# priced by a multiply-add. cache_* None: the model has no such price (calc_price decides).
Rates = tuple[float, float, float | None, float | None, float]
# A call's cost is kept to the nano-dollar: usage_calls stores it as a whole number of them (cost_nusd),
# which SQLite keeps in 3-4 bytes instead of an 8-byte float (issue 14). A billionth of a dollar is far
# below any price's own precision; the roll-ups sum the same rounded figures as the calls.
NANO_USD = 1e9
LOCAL_RATES: Rates = (0.0, 0.0, 0.0, 0.0, float("inf"))


def linear_cost(
    r: Rates, input_tokens: int, output_tokens: int, cache_read_tokens: int, cache_write_tokens: int
) -> float | None:
    """USD from per-million rates, or None when they do not apply (a price tier reached, a cache price
    the model lacks, cached tokens above the input count). The one formula both ingest paths use."""
    per_input, per_output, per_cache_read, per_cache_write, below = r
    fresh = input_tokens - cache_read_tokens - cache_write_tokens
    if fresh < 0 or input_tokens >= below:
        return None
    usd = fresh * per_input + output_tokens * per_output
    if cache_read_tokens:
        if per_cache_read is None:
            return None
        usd += cache_read_tokens * per_cache_read
    if cache_write_tokens:
        if per_cache_write is None:
            return None
        usd += cache_write_tokens * per_cache_write
    return round(usd * (NANO_USD / 1e6)) / NANO_USD


class Pricing:
    def __init__(self, prices: PriceConfig | None = None, local_providers: Iterable[str] = ()):
        self.prices = prices or PriceConfig()
        self.local = set(local_providers)
        # genai-prices caches the models it finds but not the ones it does not: remember those, or every
        # record of an unknown model pays a full search of the table (measured: ~0.25 ms a record).
        self._unknown: set[tuple[str, str]] = set()
        self._rates: dict[tuple[str, str], Rates | None] = {}
        if self.prices.auto_update:
            from genai_prices import UpdatePrices

            self._updater = UpdatePrices()
            self._updater.start(wait=False)

    def rates(self, provider: str, model: str) -> Rates | None:
        """The per-million rates a request of this model is priced at (local: 0, an override, or the
        table's when its price is plain per-token); None: only calc_price knows (tiers, unknown model)."""
        key = (provider, model)
        try:
            return self._rates[key]
        except KeyError:
            pass
        if provider in self.local:
            rates: Rates | None = LOCAL_RATES
        elif key in self.prices.overrides:
            o = self.prices.overrides[key]
            rates = (
                o.input,
                o.output,
                o.cache_read if o.cache_read is not None else o.input,
                o.cache_write if o.cache_write is not None else o.input,
                float("inf"),
            )
        else:
            rates = self._linear_rates(provider, model)
        if not self.prices.auto_update:  # an updated table may change them: then look up each time
            self._rates[key] = rates
        return rates

    def cost(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        at: float | None = None,
    ) -> float | None:
        """USD for one request, or None when the price is unknown. input_tokens includes cached ones.
        `at`: when the call was made (unix seconds) — some prices depend on the time of day (DeepSeek's
        off-peak discount), so a call is priced at its own time, not at the time it is ingested."""
        rates = self.rates(provider, model)
        if rates is not None:
            linear = linear_cost(rates, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
            if linear is not None:
                return linear
            if provider in self.local:
                return 0.0
            if (provider, model) in self.prices.overrides:
                return None  # more cached than input tokens: counts no price fits (never the table's)
        if (provider, model) in self._unknown:
            return None
        from genai_prices import Usage, calc_price

        try:
            calc = calc_price(
                Usage(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=cache_read_tokens or None,
                    cache_write_tokens=cache_write_tokens or None,
                ),
                model,
                provider_id=PRICE_PROVIDER.get(provider, provider),
                genai_request_timestamp=None if at is None else datetime.datetime.fromtimestamp(at, datetime.UTC),
            )
        except LookupError:
            self._unknown.add((provider, model))
            return None
        except ValueError:
            return None  # this request's counts, not the model: price it unknown, keep the model known
        return round(float(calc.total_price) * NANO_USD) / NANO_USD

    def _linear_rates(self, provider: str, model: str) -> tuple[Any, ...] | None:
        """Per-million rates when the model's price is plain per-token (tiers: their base price, valid
        below the first tier), so a record costs a multiply-add instead of a full calc_price (~0.2 ms).
        None: price with calc_price every time. tests/test_usage checks both ways agree."""
        from genai_prices.data_snapshot import get_snapshot
        from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices

        try:
            _, info = get_snapshot().find_provider_model(model, None, PRICE_PROVIDER.get(provider, provider), None)
        except (LookupError, ValueError):
            return None
        prices = getattr(info, "prices", None)
        if isinstance(prices, list):
            # Prices that changed on given dates (a "-latest" alias moving to a new model): the one in force
            # today is what calc_price charges now, and stays so unless a change is scheduled ahead. Prices
            # by time of day, or a change still to come, are left to calc_price.
            today = datetime.datetime.now(datetime.UTC)
            constraints = [c.constraint for c in prices if c.constraint is not None]
            if not all(isinstance(c, StartDateConstraint) and c.active(today) for c in constraints):
                return None
            prices = info.get_prices(today)
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
