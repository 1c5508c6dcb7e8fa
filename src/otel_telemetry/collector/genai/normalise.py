"""GenAI normalisation: one set of fields for LLM spans, whatever convention the producer used.

Current OTel GenAI attributes, their legacy names and OpenInference's all land in the same
columns (``GENAI_COLUMNS``); see docs/schema.md for the full list of names read. Semantics are
the OTel ones: ``input_tokens`` INCLUDES cache-read and cache-write tokens and ``output_tokens``
INCLUDES reasoning tokens. A producer that reported them disjoint (Anthropic's raw ``usage``,
Gemini's thoughts) is recognised when the parts exceed the whole, and the parts are added in.

Cost: a producer-supplied cost wins; otherwise the model is priced from ``prices`` (bundled
table + user overrides). A model that cannot be priced gets a NULL cost, never 0, and is
counted in :func:`unknown_models`.

``normalise`` runs on collector receiver threads for every span: it must stay cheap for
non-GenAI spans (one pass over the attribute keys), must not raise and must not block.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

from ...store.schema import GENAI_COLUMNS
from . import prices

log = logging.getLogger("otel_telemetry.collector.genai.normalise")

EMPTY: tuple[None, ...] = (None,) * len(GENAI_COLUMNS)

# Attribute names in order of preference: current OTel → legacy OTel / OpenLLMetry → OpenInference.
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.response.model", "llm.request.model",
              "llm.model_name")
AGENT_KEYS = ("gen_ai.agent.name",)
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "llm.vendor")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens",
              "llm.usage.input_tokens", "llm.token_count.prompt")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens",
               "llm.usage.output_tokens", "llm.token_count.completion")
TOTAL_KEYS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
CACHE_READ_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                   "gen_ai.usage.input_tokens.cached", "gen_ai.usage.cached_tokens",
                   "llm.usage.cache_read_input_tokens", "llm.token_count.prompt_details.cache_read")
CACHE_WRITE_KEYS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
                    "gen_ai.usage.input_tokens.cache_write", "llm.usage.cache_creation_input_tokens",
                    "llm.token_count.prompt_details.cache_write")
REASONING_KEYS = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                  "gen_ai.usage.output_tokens_details.reasoning", "gen_ai.usage.output_tokens.reasoning",
                  "llm.usage.reasoning_tokens", "llm.token_count.completion_details.reasoning")
COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total", "telemetry.cost_usd")

_PREFIXES = ("gen_ai.", "llm.", "telemetry.cost_usd")
_NO_MODEL = "(unset)"  # unknown_models() key for usage reported without any model name
_MAX_UNKNOWN = 1000

_lock = threading.Lock()
_unknown: dict[str, int] = {}


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _count(value: Any) -> int | None:
    """A token count from an int, float or numeric string; None for anything else or < 0."""
    if value is None or isinstance(value, bool):
        return None
    try:
        n = int(value) if isinstance(value, int) else int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return n if 0 <= n < 1 << 63 else None  # beyond int64 SQLite cannot store it: not a count


def _money(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f >= 0 else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):  # e.g. a one-element array attribute
        value = value[0] if value else None
        if value is None:
            return None
    s = str(value).strip()
    return s or None


# Attribute keys seen that carry no GenAI field: most spans' keys are all in it, which one C-level
# set test settles (keys are few and repeat; bounded all the same). Any receiver thread may add.
_PLAIN_KEYS: set[str] = set()


def is_genai(attrs: Mapping[str, Any]) -> bool:
    """True if any attribute could carry GenAI fields (the cheap pre-check)."""
    plain = _PLAIN_KEYS
    if plain.issuperset(attrs):
        return False
    for k in attrs:
        if k in plain:
            continue
        if type(k) is not str:
            continue
        if k.startswith(_PREFIXES):
            return True
        if len(plain) < 4096:
            plain.add(k)
    return False


def normalise(attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``GENAI_COLUMNS`` values for one span's attributes; ``EMPTY`` for a non-GenAI span."""
    if not is_genai(attrs):
        return EMPTY
    try:
        return _normalise(attrs)
    except Exception:  # a malformed attribute must never fail the batch
        log.debug("genai normalisation failed", exc_info=True)
        return EMPTY


def _normalise(attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    model = _text(_first(attrs, MODEL_KEYS))
    provider = _text(_first(attrs, PROVIDER_KEYS))
    provider = provider.lower() if provider else None
    agent = _text(_first(attrs, AGENT_KEYS))
    inp = _count(_first(attrs, INPUT_KEYS))
    out = _count(_first(attrs, OUTPUT_KEYS))
    total = _count(_first(attrs, TOTAL_KEYS))
    cache_read = _count(_first(attrs, CACHE_READ_KEYS))
    cache_write = _count(_first(attrs, CACHE_WRITE_KEYS))
    reasoning = _count(_first(attrs, REASONING_KEYS))
    producer_cost = _money(_first(attrs, COST_KEYS))
    usage = (inp, out, total, cache_read, cache_write, reasoning)
    if model is None and all(v is None for v in usage) and producer_cost is None:
        return EMPTY if provider is None and agent is None else (None, provider, agent, *EMPTY[3:])
    cached = (cache_read or 0) + (cache_write or 0)
    if cached and (inp is None or inp < cached):  # disjoint buckets (Anthropic-style): add them in
        inp = (inp or 0) + cached
    if reasoning and (out is None or out < reasoning):  # thoughts reported beside the output
        out = (out or 0) + reasoning
    if total is None and (inp is not None or out is not None):
        total = (inp or 0) + (out or 0)
    has_usage = any(v is not None for v in usage)
    cost = producer_cost
    if cost is None and has_usage:
        match = prices.lookup(model, provider) if model else None
        if match is None:
            _note_unknown(model or _NO_MODEL)
        else:
            cost = prices.cost(match[2], inp, out, cache_read, cache_write, reasoning)
            if cost is None:
                _note_unknown(model or _NO_MODEL)
            if provider is None and match[1] != "override":
                provider = match[1]
    return (model, provider, agent, inp, out, cache_read, cache_write, reasoning, total,
            None if cost is None else round(cost, 12))


def _note_unknown(model: str) -> None:
    with _lock:
        if model in _unknown or len(_unknown) < _MAX_UNKNOWN:
            _unknown[model] = _unknown.get(model, 0) + 1
        else:
            _unknown["(other)"] = _unknown.get("(other)", 0) + 1


def unknown_models() -> dict[str, int]:
    """``{model: spans seen with usage but no price}`` since start (or :func:`reset_unknown`).

    Any thread; include it in the collector status so users learn which prices to add.
    """
    with _lock:
        return dict(_unknown)


def reset_unknown() -> None:
    with _lock:
        _unknown.clear()


set_price_overrides = prices.set_price_overrides
