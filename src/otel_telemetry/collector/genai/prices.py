"""LLM prices: the bundled table (``prices.json``, package data), user overrides, model-name matching, cost.

Prices are USD per million tokens for five token kinds: ``input`` (uncached input), ``output``,
``cache_read``, ``cache_write`` and ``reasoning``. A model without a cache price bills cached
tokens at its input price; a model without a reasoning price bills reasoning at its output price
(reasoning tokens are part of the output count, so they are not billed twice). Tiered prices
(e.g. Gemini above 200k prompt tokens) switch every token to the tier's price once the prompt
(all input, cache included) reaches the tier start, as the providers bill them.

Name matching (documented in docs/schema.md), first hit wins:

1. user overrides, by exact (case-insensitive) name, then by the normalised names below;
2. the table's model ids, exactly, for the raw name then the normalised names;
3. the table's match clauses (prefixes, known aliases and dated versions), trying the providers
   named by the span's provider first, then those whose models the name looks like, then all.

Normalised names: the part after the last ``/`` (``openai/gpt-4o``, ``models/gemini-1.5-pro``);
a Bedrock-style vendor prefix and version removed (``us.anthropic.claude-…-v1:0``); a trailing
date removed (``-2024-08-06``, ``-20240620``, ``@20240620``) and ``-latest`` removed.

Everything here is called on collector receiver threads (through ``mapping``); lookups are
cached, the cache and the overrides are swapped atomically, nothing blocks or does I/O.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

# Generated data, read once at import: (model id, match clause, prices) per provider, in
# genai-prices' matching order (scripts/update_price_table.py writes the file).
_TABLE = json.loads(resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8"))
SOURCE: str = _TABLE["source"]
GENERATED: str = _TABLE["generated"]
PROVIDERS: list[dict[str, Any]] = _TABLE["providers"]
KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
# Config keys of ``set_price_overrides`` → price kinds.
OVERRIDE_KEYS = {f"{k}_per_mtok": k for k in KINDS}

Price = float | dict[str, Any]  # a number, or {"base": n, "tiers": [[start_tokens, n], ...]}
Prices = dict[str, Price]

_lock = threading.Lock()
_overrides: dict[str, Prices] = {}
_generation = 0  # part of the lookup cache key, so a lookup racing an override change never sticks

_VENDOR = re.compile(r"^(?:[a-z]{2,4}\.)?(?:anthropic|meta|mistral|cohere|amazon|ai21|deepseek|openai|google)\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_DATE = re.compile(r"(?:[-@]\d{4}-\d{2}-\d{2}|[-@]20\d{6}|-latest)$")


def set_price_overrides(overrides: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Replace the user price overrides: ``{model: {"input_per_mtok": 2.5, ...}}``.

    Keys are ``input_per_mtok``, ``output_per_mtok``, ``cache_read_per_mtok``,
    ``cache_write_per_mtok``, ``reasoning_per_mtok`` (USD per million tokens, ≥ 0). An override
    for a model the table knows replaces only the kinds it names. Raises ``ValueError`` on a bad
    key or value (call it while validating config at start-up); any thread.
    """
    parsed: dict[str, Prices] = {}
    for model, spec in (overrides or {}).items():
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"price override: model name {model!r} must be a non-empty string")
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(f"price override for {model!r}: expected a mapping of *_per_mtok prices")
        entry: Prices = {}
        for key, value in spec.items():
            kind = OVERRIDE_KEYS.get(key)
            if kind is None:
                raise ValueError(f"price override for {model!r}: unknown key {key!r} "
                                 f"(expected {', '.join(OVERRIDE_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValueError(f"price override for {model!r}: {key} must be a number >= 0, got {value!r}")
            entry[kind] = float(value)
        parsed[model.strip().lower()] = entry
    global _overrides, _generation
    with _lock:
        _overrides = parsed
        _generation += 1
        _lookup.cache_clear()


def price_overrides() -> dict[str, Prices]:
    """The overrides in force (a copy)."""
    return {k: dict(v) for k, v in _overrides.items()}


def candidates(model: str) -> list[str]:
    """The raw name (lower case) followed by its normalised forms, without repeats."""
    out = [model.strip().lower()]

    def add(name: str) -> None:
        if name and name not in out:
            out.append(name)

    base = out[0].rsplit("/", 1)[-1]
    add(base)
    if _VENDOR.match(base):
        base = _BEDROCK_VERSION.sub("", _VENDOR.sub("", base))
        add(base)
    undated = _DATE.sub("", base)
    add(undated)
    add(_DATE.sub("", undated))  # "-2024-08-06-latest" and the like
    return out


def _is_match(clause: Any, text: str) -> bool:
    if clause is None:
        return False
    if "or" in clause:
        return any(_is_match(c, text) for c in clause["or"])
    if "and" in clause:
        return all(_is_match(c, text) for c in clause["and"])
    if "equals" in clause:
        return text == clause["equals"].lower()
    if "starts_with" in clause:
        return text.startswith(clause["starts_with"].lower())
    if "ends_with" in clause:
        return text.endswith(clause["ends_with"].lower())
    if "contains" in clause:
        return clause["contains"].lower() in text
    if "regex" in clause:
        return re.search(clause["regex"], text) is not None
    return False


def _providers_for(name: str, provider: str | None) -> list[dict[str, Any]]:
    table = PROVIDERS
    hinted = [p for p in table if provider and (p["id"] == provider or _is_match(p["provider_match"], provider))]
    looks = [p for p in table if p not in hinted and _is_match(p["model_match"], name)]
    return hinted + looks + [p for p in table if p not in hinted and p not in looks]


def lookup(model: str, provider: str | None = None) -> tuple[str, str, Prices] | None:
    """``(matched model id, provider id, prices)`` for a model name, or None if unknown.

    The provider id is ``"override"`` for a user override without a table entry. Cached.
    """
    return _lookup(model, provider, _generation)


@lru_cache(maxsize=4096)
def _lookup(model: str, provider: str | None, generation: int) -> tuple[str, str, Prices] | None:
    overrides = _overrides  # assigned before the generation is bumped, so never older than it
    names = candidates(model)
    prov = provider.strip().lower() if provider else None
    override = next((overrides[n] for n in names if n in overrides), None)
    found: tuple[str, str, Prices] | None = None
    for name in names:  # exact table ids
        for p in _providers_for(name, prov):
            for mid, _, prices in p["models"]:
                if mid.lower() == name:
                    found = (mid, p["id"], prices)
                    break
            if found:
                break
        if found:
            break
    if found is None:
        for name in names:  # match clauses
            for p in _providers_for(name, prov):
                hit = next(((mid, p["id"], pr) for mid, clause, pr in p["models"] if _is_match(clause, name)), None)
                if hit:
                    found = hit
                    break
            if found:
                break
    if override is not None:
        if found is None:
            return (model, "override", dict(override))
        return (found[0], found[1], {**found[2], **override})
    return found


def _rate(price: Price | None, prompt_tokens: int) -> float | None:
    if price is None or isinstance(price, (int, float)):
        return price
    rate = float(price["base"])
    for start, tier_price in price.get("tiers", ()):
        if prompt_tokens >= start:
            rate = float(tier_price)
    return rate


def cost(prices: Prices, input_tokens: int | None, output_tokens: int | None, cache_read: int | None,
         cache_write: int | None, reasoning: int | None) -> float | None:
    """USD for one call; None when the table lacks a price for a token kind that was used.

    ``input_tokens`` includes the cache tokens and ``output_tokens`` the reasoning tokens
    (OTel GenAI semantics, see ``genai.normalise``); missing counts are 0.
    """
    inp, out = input_tokens or 0, output_tokens or 0
    cr, cw, rs = cache_read or 0, cache_write or 0, reasoning or 0
    p_in = _rate(prices.get("input"), inp)
    p_out = _rate(prices.get("output"), inp)
    p_cr = _rate(prices.get("cache_read"), inp)
    p_cw = _rate(prices.get("cache_write"), inp)
    p_rs = _rate(prices.get("reasoning"), inp)
    uncached = max(inp - cr - cw, 0)
    total = 0.0
    for tokens, rate in ((uncached, p_in), (cr, p_cr if p_cr is not None else p_in),
                         (cw, p_cw if p_cw is not None else p_in)):
        if tokens:
            if rate is None:
                return None
            total += tokens * rate
    if p_rs is not None and rs:
        plain, total = max(out - rs, 0), total + rs * p_rs
    else:
        plain = out
    if plain:
        if p_out is None:
            return None
        total += plain * p_out
    return total / 1_000_000
