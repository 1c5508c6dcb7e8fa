"""The six telemetry categories, the default rules that pick one, and topic names.

Shared by the app side (to choose a ZeroMQ topic) and the collector (to categorise data that
arrived over OTLP without a topic). Rules are key-presence checks, not scans over every attribute,
so categorising costs a handful of dict lookups per span on the exporter's sender thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CATEGORIES: tuple[str, ...] = (
    "system_performance",
    "ai_behavior",
    "user_interaction",
    "component_interactions",
    "error_patterns",
    "ai_research",
)
CATEGORY_SET = frozenset(CATEGORIES)

DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "system_performance": 30,
    "ai_behavior": 90,
    "user_interaction": 30,
    "component_interactions": 30,
    "error_patterns": 90,
    "ai_research": 365,
}

# Record levels, lowest first; both sides filter on them (``volume``: a minimum level per category).
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
LEVEL_RANK: dict[str, int] = {name: i for i, name in enumerate(LEVELS)}
ALL_CATEGORIES = "*"  # in per-category settings: every category not named


def severity_level(n: int) -> str:
    """The level of an OTel log severity number (0, unspecified, is info)."""
    if n >= 21:
        return "critical"
    if n >= 17:
        return "error"
    if n >= 13:
        return "warning"
    if n >= 9 or n == 0:
        return "info"
    return "debug"


def span_level(status_code: int, attrs: Mapping[str, Any]) -> str:
    """A span's level: an event's own (``record_telemetry``), else error for status ERROR, else info."""
    if "telemetry.event" in attrs and "telemetry.data" in attrs:
        return str(attrs.get("telemetry.level") or "info")
    return "error" if status_code == STATUS_ERROR else "info"


def per_category(raw: Any, parse: Any, what: str) -> dict[str, Any]:
    """``{category or "*": value}`` from a mapping, ``"cat=v,*=v"`` or one bare value (every
    category). Raises ValueError naming the bad part."""
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, str) and "=" in raw:
        items = []
        for part in raw.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"{what}: expected category=value, got {part.strip()!r}")
            items.append((key.strip(), value.strip()))
    else:
        items = [(ALL_CATEGORIES, raw)]
    out: dict[str, Any] = {}
    for key, value in items:
        if key != ALL_CATEGORIES and key not in CATEGORY_SET:
            raise ValueError(f"{what}: unknown category {key!r} (one of {', '.join(CATEGORIES)} or *)")
        out[key] = parse(value)
    return out


TOPIC_PREFIX = "telemetry."
CONTROL_TOPIC = "telemetry._control"

# Span kinds as the SDK numbers them (opentelemetry.trace.SpanKind values).
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 0, 1, 2, 3, 4
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

_GEN_AI_KEYS = (
    "gen_ai.operation.name",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "llm.model_name",
    "llm.token_count.prompt",
)
_DB_KEYS = ("db.system", "db.system.name")
_MESSAGING_KEYS = ("messaging.system",)
_RPC_KEYS = ("rpc.system",)
_HTTP_KEYS = ("http.request.method", "http.method")
_EXCEPTION_KEYS = ("exception.type", "exception.message")
_SPAN_RULE_KEYS = frozenset(_GEN_AI_KEYS + _DB_KEYS + _MESSAGING_KEYS + _RPC_KEYS + _HTTP_KEYS + _EXCEPTION_KEYS)
_GEN_AI_SET, _DB_SET, _MESSAGING_SET, _RPC_SET, _HTTP_SET, _EXCEPTION_SET = map(
    frozenset, (_GEN_AI_KEYS, _DB_KEYS, _MESSAGING_KEYS, _RPC_KEYS, _HTTP_KEYS, _EXCEPTION_KEYS))


@dataclass(frozen=True)
class Rule:
    """A user rule from config: the first rule whose conditions all hold picks the category.

    ``name_prefix`` matches the span/metric/log-event name; ``attribute`` requires that key to be
    present (and equal ``value`` when given).
    """

    category: str
    subcategory: str | None = None
    name_prefix: str | None = None
    attribute: str | None = None
    value: Any = None
    signal: str | None = None  # span | metric | log | event

    def matches(self, signal: str, name: str, attrs: Mapping[str, Any]) -> bool:
        if self.signal is not None and self.signal != signal:
            return False
        if self.name_prefix is not None and not name.startswith(self.name_prefix):
            return False
        if self.attribute is not None:
            if self.attribute not in attrs:
                return False
            if self.value is not None and attrs[self.attribute] != self.value:
                return False
        return True


def _has_any(attrs: Mapping[str, Any], keys: Sequence[str]) -> bool:
    for k in keys:
        if k in attrs:
            return True
    return False


def explicit(attrs: Mapping[str, Any]) -> str | None:
    cat = attrs.get("telemetry.category")
    if cat is not None and cat in CATEGORY_SET:
        return cat  # type: ignore[return-value]
    return None


def _explicit_or_rule(
    signal: str, name: str, attrs: Mapping[str, Any], rules: Sequence[Rule]
) -> tuple[str, str] | None:
    cat = explicit(attrs)
    if cat is not None:
        return cat, str(attrs.get("telemetry.subcategory") or "explicit")
    for rule in rules:
        if rule.matches(signal, name, attrs):
            return rule.category, rule.subcategory or "rule"
    return None


def categorise_span(
    name: str, kind: int, status_code: int, attrs: Mapping[str, Any], has_exception_event: bool = False,
    rules: Sequence[Rule] = (),
) -> tuple[str, str]:
    """Return ``(category, subcategory)`` for a span. Must not raise for any attribute values."""
    if rules or "telemetry.category" in attrs:
        chosen = _explicit_or_rule("span", name, attrs, rules)
        if chosen is not None:
            return chosen
    # One C-level pass over the keys finds every key a default rule looks at; the decisions below
    # then test that (usually empty or one-key) set, not the span's attributes again.
    hit = _SPAN_RULE_KEYS.intersection(attrs)
    if not hit and status_code != STATUS_ERROR and not has_exception_event:
        if kind == KIND_SERVER:
            return "user_interaction", "server"
        if kind == KIND_CLIENT:
            return "component_interactions", "client"
        if kind in (KIND_PRODUCER, KIND_CONSUMER):
            return "component_interactions", "messaging"
        return "component_interactions", "internal"
    if status_code == STATUS_ERROR or has_exception_event or not _EXCEPTION_SET.isdisjoint(hit):
        return "error_patterns", "exception" if has_exception_event else "error_status"
    if not _GEN_AI_SET.isdisjoint(hit):
        return "ai_behavior", str(attrs.get("gen_ai.operation.name") or "gen_ai")
    if not _DB_SET.isdisjoint(hit):
        return "component_interactions", "db"
    if not _MESSAGING_SET.isdisjoint(hit) or kind in (KIND_PRODUCER, KIND_CONSUMER):
        return "component_interactions", "messaging"
    if not _RPC_SET.isdisjoint(hit):
        return "component_interactions", "rpc"
    if kind == KIND_SERVER:
        return "user_interaction", "http_server" if not _HTTP_SET.isdisjoint(hit) else "server"
    if kind == KIND_CLIENT:
        return "component_interactions", "http_client" if not _HTTP_SET.isdisjoint(hit) else "client"
    return "component_interactions", "internal"


_METRIC_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("system.", "system_performance", "system"),
    ("process.", "system_performance", "process"),
    ("runtime.", "system_performance", "runtime"),
    ("gen_ai.", "ai_behavior", "gen_ai"),
    ("llm.", "ai_behavior", "gen_ai"),
    ("http.server.", "user_interaction", "http_server"),
    ("http.client.", "component_interactions", "http_client"),
    ("db.", "component_interactions", "db"),
    ("rpc.", "component_interactions", "rpc"),
    ("messaging.", "component_interactions", "messaging"),
)


def categorise_metric(name: str, attrs: Mapping[str, Any], rules: Sequence[Rule] = ()) -> tuple[str, str]:
    chosen = _explicit_or_rule("metric", name, attrs, rules)
    if chosen is not None:
        return chosen
    for prefix, category, sub in _METRIC_PREFIXES:
        if name.startswith(prefix):
            return category, sub
    return "system_performance", "metric"


def categorise_log(
    severity_number: int, attrs: Mapping[str, Any], event_name: str = "", rules: Sequence[Rule] = ()
) -> tuple[str, str]:
    chosen = _explicit_or_rule("log", event_name, attrs, rules)
    if chosen is not None:
        return chosen
    if severity_number >= 17 or _has_any(attrs, _EXCEPTION_KEYS):  # 17 = ERROR
        return "error_patterns", "log_error"
    if event_name.startswith("gen_ai.") or _has_any(attrs, _GEN_AI_KEYS):
        return "ai_behavior", "gen_ai"
    return "component_interactions", "log"


_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def topic_for(category: str, component: str) -> str:
    """``telemetry.<category>.<component>``; component chars outside [A-Za-z0-9_.-] become '_'."""
    return f"{TOPIC_PREFIX}{category}.{_TOPIC_UNSAFE.sub('_', component)[:128] or 'unknown'}"


def parse_topic(topic: str) -> tuple[str, str] | None:
    """Inverse of :func:`topic_for`; ``None`` for anything that is not a data topic."""
    if not topic.startswith(TOPIC_PREFIX):
        return None
    rest = topic[len(TOPIC_PREFIX):]
    category, _, component = rest.partition(".")
    if category not in CATEGORY_SET:
        return None
    return category, component or "unknown"


def parse_rules(raw: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """Validate user rules from config; raises ValueError naming the bad key or value."""
    allowed = {"category", "subcategory", "name_prefix", "attribute", "value", "signal"}
    rules = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ValueError(f"categories.rules[{i}]: expected a mapping")
        unknown = set(item) - allowed
        if unknown:
            raise ValueError(f"categories.rules[{i}]: unknown key {sorted(unknown)[0]!r}")
        cat = item.get("category")
        if cat not in CATEGORY_SET:
            raise ValueError(f"categories.rules[{i}].category: {cat!r} is not one of {', '.join(CATEGORIES)}")
        sig = item.get("signal")
        if sig is not None and sig not in ("span", "metric", "log", "event"):
            raise ValueError(f"categories.rules[{i}].signal: {sig!r} is not span|metric|log|event")
        rules.append(Rule(**{k: item[k] for k in item}))
    return rules
