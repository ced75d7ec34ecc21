"""What a Claude call costs: the price table (USD per million tokens) and the arithmetic, in Decimal.

The defaults come from the vendor's model pages (FACTS.md 5.6). Cache prices not published for a
model follow the documented multipliers of its input price: a 5-minute cache write costs 1.25x,
a 1-hour write 2x, a cache read 0.1x. `LLM_PRICES_JSON` overrides or adds models, e.g.
`{"claude-sonnet-5-5": {"input": 2, "output": 10}}`; cache prices left out are derived the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MILLION = Decimal(1_000_000)
CacheTtl = Literal["5m", "1h"]
_DATED_SNAPSHOT = re.compile(r"^(.+)-\d{8}$")


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_write_5m: Decimal = Field(ge=0)
    cache_write_1h: Decimal = Field(ge=0)
    cache_read: Decimal = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _derive_cache_prices(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "input" not in data:
            return data
        try:
            base = Decimal(str(data["input"]))
        except ArithmeticError:  # not a number: validation fails on `input`, which is what to report
            base = Decimal(0)
        derived = {
            "cache_write_5m": base * Decimal("1.25"),
            "cache_write_1h": base * 2,
            "cache_read": base * Decimal("0.1"),
        }
        return {**derived, **{key: value for key, value in data.items() if value is not None}}

    def cache_write(self, ttl: CacheTtl) -> Decimal:
        return self.cache_write_1h if ttl == "1h" else self.cache_write_5m


def _price(input_: str, output: str, **cache: str) -> ModelPrice:
    return ModelPrice.model_validate({"input": input_, "output": output, **cache})


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-sonnet-5-5": _price("2", "10", cache_write_5m="2.50", cache_write_1h="4", cache_read="0.20"),
    # Haiku 5.5 doubles to $0.50/$2.50 above 100K prompt tokens; the agents' prompts stay far below
    "claude-haiku-5-5": _price("0.10", "0.50"),
    "claude-opus-5-5": _price("4", "20"),
    "claude-fable-5-1": _price("10", "50"),
    "claude-sonnet-5": _price("2", "10"),
    "claude-opus-5": _price("5", "25"),
    "claude-haiku-4-5": _price("1", "5"),
    "claude-sonnet-4-6": _price("3", "15"),
    "claude-sonnet-4-5": _price("3", "15"),  # also prices the dated id claude-sonnet-4-5-20250929
}


class TokenUsage(BaseModel):
    """The usage an answer reports. `input_tokens` excludes the cache writes and reads."""

    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cache_creation_input_tokens: int = Field(0, ge=0)
    cache_read_input_tokens: int = Field(0, ge=0)
    # the per-TTL split of the cache writes, when the answer carries it
    cache_creation_5m_tokens: int | None = Field(None, ge=0)
    cache_creation_1h_tokens: int | None = Field(None, ge=0)


def price_for(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """The exact id, else the id it is a dated snapshot of (`claude-sonnet-4-5-20250929`)."""
    if model in prices:
        return prices[model]
    snapshot = _DATED_SNAPSHOT.match(model)
    return prices.get(snapshot.group(1)) if snapshot else None


def most_expensive(prices: Mapping[str, ModelPrice]) -> ModelPrice:
    """Each component's highest price: an unknown model is charged at least what it can cost."""
    listed = list(prices.values())
    return ModelPrice(
        input=max(p.input for p in listed),
        output=max(p.output for p in listed),
        cache_write_5m=max(p.cache_write_5m for p in listed),
        cache_write_1h=max(p.cache_write_1h for p in listed),
        cache_read=max(p.cache_read for p in listed),
    )


def cost_usd(price: ModelPrice, usage: TokenUsage, *, requested_ttl: CacheTtl) -> Decimal:
    """Exact cost in USD. Cache writes without a per-TTL split are charged at the TTL we asked for."""
    if usage.cache_creation_5m_tokens is None and usage.cache_creation_1h_tokens is None:
        writes_5m = usage.cache_creation_input_tokens if requested_ttl == "5m" else 0
        writes_1h = usage.cache_creation_input_tokens if requested_ttl == "1h" else 0
    else:
        writes_5m = usage.cache_creation_5m_tokens or 0
        writes_1h = usage.cache_creation_1h_tokens or 0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + writes_5m * price.cache_write("5m")
        + writes_1h * price.cache_write("1h")
        + usage.cache_read_input_tokens * price.cache_read
    )
    return total / MILLION


def worst_case_usd(price: ModelPrice, *, input_tokens: int, max_tokens: int, ttl: CacheTtl) -> Decimal:
    """The most a call can cost: every input token written to the cache (dearer than plain input)
    and every allowed output token used."""
    input_rate = max(price.input, price.cache_write(ttl))
    return (input_tokens * input_rate + max_tokens * price.output) / MILLION
