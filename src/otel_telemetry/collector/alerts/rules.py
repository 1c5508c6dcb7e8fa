"""Alert rules: the ``alerts:`` configuration section and each rule's current value in SQL.

Rule kinds (the value a rule compares with ``op`` and ``threshold``):

* ``threshold``: an aggregation (avg, min, max, sum, count, p50/p90/p95/p99 nearest-rank, rate) of
  a numeric column over the window. On a histogram metric, avg/min/max/sum/count and the
  percentiles are those of the values recorded in the window, from the buckets
  (``query/histograms.py``, like Prometheus' ``histogram_quantile``).
  ``source: metrics`` (default) reads ``metric_value`` of metric rows named ``metric``;
  ``source: spans`` reads ``duration_ms`` of spans (``metric`` then filters on the span name);
  ``field`` picks another allow-listed column. ``rate`` is the per-second increase of a cumulative
  metric, summed over its series (counter resets handled), or for spans / records the number of matches per second.
* ``frequency``: the number of records matching ``filter`` in the window (e.g. error events/min).
* ``success_rate``: share of matching spans (``source: records``: any records) whose level is not
  error/critical; no matching spans means no value.
* ``cost_budget``: sum of ``cost_usd`` over the window (default 1d) of matching records.

A rule with no data (no value) is treated as not met. Every SQL identifier comes from the
allow-lists below; every value is a bound parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apsw

from ...query import filters as query
from ...query import histograms
from ...query.ai_stats import CALL_SQL
from . import callwindow
from .callwindow import CallWindow
from .notify import SEVERITIES

KINDS = ("threshold", "frequency", "success_rate", "cost_budget")
SOURCES = ("metrics", "spans", "records", "calls")
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p90", "p95", "p99", "rate")
OPS: dict[str, Any] = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
FILTER_COLUMNS = ("type", "category", "subcategory", "component", "event", "level", "name", "service",
                  "status", "kind", "session_id", "model", "provider")
VALUE_FIELDS = ("metric_value", "duration_ms", "cost_usd", "input_tokens", "output_tokens",
                "total_tokens")
_ATTR_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-/]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_NS = 1_000_000_000

_RULE_KEYS = {"name", "id", "kind", "metric", "source", "aggregation", "field", "window", "op", "threshold",
              "severity", "for", "cooldown", "filter", "message", "channels", "min_samples"}


@dataclass(frozen=True)
class AlertRule:
    name: str  # free text, as the design documents write them ("High CPU Usage")
    kind: str
    window_s: float
    op: str
    threshold: float
    severity: str = "warning"
    for_s: float = 0.0
    cooldown_s: float = 0.0
    metric: str | None = None
    source: str = "metrics"
    aggregation: str = "avg"
    field: str = "metric_value"
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    message: str | None = None
    id: str = ""  # letters/digits/_.:- ; derived from the name unless given (rule_id_of)
    channels: tuple[str, ...] = ()  # notify target names or types; () = every target
    min_samples: int = 1  # fewer matching records than this in the window: no value (not met)
    default: bool = False  # one of the built-in default rules (config.DEFAULT_RULES)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", rule_id_of(self.name))

    @property
    def label(self) -> str:
        """What the value measures, for messages and the ``metric`` field of notifications."""
        return self.metric or self.name

    def met(self, value: float | None) -> bool:
        return value is not None and bool(OPS[self.op](float(value), float(self.threshold)))

    def describe(self, value: float | None) -> str:
        shown = "no data" if value is None else f"{value:g}"
        text = self.message or f"{self.name}: {self.kind} {self.label}"
        return f"{text} = {shown} (threshold {self.op} {self.threshold:g}, window {self.window_s:g}s)"


def _check_keys(where: str, raw: Any, allowed: set[str]) -> None:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _duration(where: str, raw: Any, allow_zero: bool = False) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"{where}: expected a duration like 30s, 5m, 1d, got {raw!r}")
    if isinstance(raw, int | float):
        secs = float(raw)
    elif isinstance(raw, str) and allow_zero and raw.strip() in ("0", "0s"):
        secs = 0.0
    elif isinstance(raw, str):
        try:
            secs = float(query.parse_duration(raw))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    else:
        raise ValueError(f"{where}: expected a duration like 30s, 5m, 1d, got {raw!r}")
    if not math.isfinite(secs) or secs < 0 or (secs == 0 and not allow_zero):
        raise ValueError(f"{where}: must be a {'non-negative' if allow_zero else 'positive'} duration")
    return secs


def _number(where: str, raw: Any, minimum: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"{where}: expected a number, got {raw!r}")
    if minimum is not None and raw < minimum:
        raise ValueError(f"{where}: must be >= {minimum:g}, got {raw!r}")
    return float(raw)


def _choice(where: str, raw: Any, allowed: tuple[str, ...] | dict[str, Any]) -> str:
    if raw not in allowed:
        raise ValueError(f"{where}: must be one of {', '.join(allowed)}, got {raw!r}")
    return str(raw)


def _filter(where: str, raw: Any) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[tuple[str, str], ...]]:
    raw = {} if raw is None else raw
    _check_keys(where, raw, {*FILTER_COLUMNS, "attributes"})
    cols: list[tuple[str, tuple[str, ...]]] = []
    for key, value in raw.items():
        if key == "attributes":
            continue
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{where}.{key}: expected a string or a list of strings, got {value!r}")
        cols.append((key, tuple(str(v) for v in values)))
    attrs = raw.get("attributes") or {}
    if not isinstance(attrs, Mapping):
        raise ValueError(f"{where}.attributes: expected a mapping of attribute name to value")
    for key, value in attrs.items():
        if not isinstance(key, str) or not _ATTR_KEY_RE.match(key):
            raise ValueError(f"{where}.attributes: bad attribute name {key!r}")
        if isinstance(value, dict | list) or value is None:
            raise ValueError(f"{where}.attributes.{key}: expected a scalar value, got {value!r}")
    return tuple(cols), tuple((str(k), v) for k, v in attrs.items())


def rule_id_of(name: str) -> str:
    """The id derived from a free-text rule name: "High CPU Usage" → ``high_cpu_usage``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "rule"


def parse_rule(raw: Any, where: str) -> AlertRule:
    """One rule mapping → AlertRule; ValueError names the rule, the key and the problem."""
    _check_keys(where, raw, _RULE_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ValueError(f"{where}.name: required, up to 200 printable characters, got {name!r}")
    name = name.strip()
    where = f"{where} ({name})"
    rule_id = raw.get("id", rule_id_of(name))
    if not isinstance(rule_id, str) or not _NAME_RE.match(rule_id):
        raise ValueError(f"{where}.id: letters/digits/_.:- only, got {rule_id!r}")
    kind = _choice(f"{where}.kind", raw.get("kind", "threshold"), KINDS)
    if "threshold" not in raw:
        raise ValueError(f"{where}.threshold: required")
    default_source = {"threshold": "metrics", "success_rate": "spans"}.get(kind, "records")
    source = _choice(f"{where}.source", raw.get("source", default_source), SOURCES)
    aggregation = _choice(f"{where}.aggregation", raw.get("aggregation", "avg"), AGGREGATIONS)
    default_field = {"metrics": "metric_value", "spans": "duration_ms", "calls": "duration_ms"}.get(
        source, "metric_value")
    if kind == "cost_budget":
        default_field = "cost_usd"
    fld = _choice(f"{where}.field", raw.get("field", default_field), VALUE_FIELDS)
    metric = raw.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise ValueError(f"{where}.metric: expected a name, got {metric!r}")
    if kind == "threshold" and source == "metrics" and not metric:
        raise ValueError(f"{where}.metric: required for a threshold rule on metrics")
    for key, only in (("aggregation", "threshold"), ("field", "threshold"), ("metric", "threshold")):
        if key in raw and kind != only and not (key == "field" and kind == "cost_budget"):
            raise ValueError(f"{where}.{key}: not used by kind {kind}")
    if "source" in raw and kind == "frequency":
        raise ValueError(f"{where}.source: not used by kind {kind}")
    if kind == "cost_budget" and source not in ("records", "calls"):
        raise ValueError(f"{where}.source: cost_budget reads records or calls")
    if kind == "success_rate" and source == "metrics":
        raise ValueError(f"{where}.source: success_rate reads spans or records")
    filt, attrs = _filter(f"{where}.filter", raw.get("filter"))
    if kind == "success_rate" and dict(filt).get("category") == ("ai_behavior",):
        # Failed GenAI calls are filed under error_patterns: this rate could never drop.
        raise ValueError(f"{where}.filter.category: ai_behavior holds only the GenAI calls that did not fail; "
                         "use source: calls (GenAI calls whatever their category)")
    channels = raw.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        raise ValueError(f"{where}.channels: expected a list of notify target names or types, got {channels!r}")
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"{where}.message: expected text")
    return AlertRule(
        name=name, id=rule_id, kind=kind, source=source, aggregation=aggregation, field=fld, metric=metric,
        window_s=_duration(f"{where}.window", raw.get("window", "1d" if kind == "cost_budget" else "5m")),
        op=_choice(f"{where}.op", raw.get("op", "<" if kind == "success_rate" else ">"), OPS),
        threshold=_number(f"{where}.threshold", raw["threshold"]),
        severity=_choice(f"{where}.severity", raw.get("severity", "warning"), SEVERITIES),
        for_s=_duration(f"{where}.for", raw.get("for", 0), allow_zero=True),
        cooldown_s=_duration(f"{where}.cooldown", raw.get("cooldown", 0), allow_zero=True),
        filter=filt, attributes=attrs, message=message, channels=tuple(channels),
        min_samples=int(_number(f"{where}.min_samples", raw.get("min_samples", 1), 1)))


# ---- evaluation (any thread, with its own read-only connection) -----------------------------------

def _where(rule: AlertRule, now_ns: int) -> tuple[str, list[Any]]:
    clauses = ["timestamp > ?", "timestamp <= ?"]
    params: list[Any] = [now_ns - int(rule.window_s * _NS), now_ns]
    if rule.kind == "cost_budget" and rule.source == "calls":
        clauses.append(f"({CALL_SQL})")
    if rule.kind == "threshold" or rule.kind == "success_rate":
        if rule.source == "metrics":
            clauses.append("type = 'metric'")
        elif rule.source == "spans":
            clauses.append("type = 'span'")
        elif rule.source == "calls":
            clauses.append(f"({CALL_SQL})")
        if rule.metric is not None:
            clauses.append("name = ?")
            params.append(rule.metric)
    for col, values in rule.filter:
        assert col in FILTER_COLUMNS  # allow-listed at parse time; checked again before use
        clauses.append(f"{col} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    for key, value in rule.attributes:
        clauses.append("json_extract(data, ?) = ?")
        params += [f'$.attributes."{key}"', value]
    return " AND ".join(clauses), params


def rule_value(conn: apsw.Connection, rule: AlertRule, now_ns: int,
               calls: CallWindow | None = None) -> float | None:
    """The rule's current value over ``(now - window, now]``; None when there is no data.

    ``calls`` (the engine's, updated this round) answers the rules it serves without SQL."""
    if calls is not None and rule.window_s * _NS <= calls.span_ns and callwindow.serves(
            rule.source, rule.kind, rule.field, rule.aggregation, bool(rule.filter or rule.attributes)):
        return _from_calls(calls, rule, now_ns)
    where, params = _where(rule, now_ns)
    if rule.kind == "frequency":
        return float(conn.execute(f"SELECT count(*) FROM records WHERE {where}", params).fetchone()[0])
    if rule.kind == "success_rate":
        total, ok = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE level NOT IN ('error', 'critical')) "
            f"FROM records WHERE {where}", params).fetchone()
        return ok / total if total and total >= rule.min_samples else None
    col = rule.field
    assert col in VALUE_FIELDS
    if rule.kind == "cost_budget":
        return float(conn.execute(f"SELECT total({col}) FROM records WHERE {where}", params).fetchone()[0])
    agg = rule.aggregation
    if agg == "rate":
        return _rate(conn, rule, where, params)
    if rule.source == "metrics" and col == "metric_value":
        hist = _histogram(conn, rule, where, params, now_ns)
        if hist is not None:
            return histograms.aggregate(hist, agg) if hist.count >= rule.min_samples else None
    if agg in ("avg", "min", "max", "sum", "count"):
        fn = "total" if agg == "sum" else agg
        sql = f"SELECT {fn}({col}), count({col}) FROM records WHERE {where} AND {col} IS NOT NULL"
        value, n = conn.execute(sql, params).fetchone()
        return None if not n or n < rule.min_samples else float(value)
    n = conn.execute(f"SELECT count(*) FROM records WHERE {where} AND {col} IS NOT NULL", params).fetchone()[0]
    if not n or n < rule.min_samples:
        return None
    rank = max(1, -(-int(agg[1:]) * n // 100))  # nearest rank, as query.nearest_rank
    row = conn.execute(f"SELECT {col} FROM records WHERE {where} AND {col} IS NOT NULL "
                       f"ORDER BY {col} LIMIT 1 OFFSET ?", [*params, rank - 1]).fetchone()
    return float(row[0])


def _from_calls(calls: CallWindow, rule: AlertRule, now_ns: int) -> float | None:
    since = now_ns - int(rule.window_s * _NS)
    if rule.kind == "success_rate":
        return calls.success_rate(since, now_ns, rule.min_samples)
    if rule.kind == "cost_budget":
        return calls.cost(since, now_ns)
    values = calls.durations(since, now_ns)
    if not values or len(values) < rule.min_samples:
        return None
    agg = rule.aggregation
    simple = {"avg": lambda v: sum(v) / len(v), "min": min, "max": max, "sum": sum, "count": len}
    if agg in simple:
        return float(simple[agg](values))
    return query.nearest_rank(values, int(agg[1:]))


def _histogram(conn: apsw.Connection, rule: AlertRule, where: str, params: list[Any],
               now_ns: int) -> histograms.Window | None:
    """The window's histogram points merged (None when the metric has none): a histogram's
    ``metric_value`` is its sum, so its percentiles must come from the buckets."""
    types = ", ".join(f"'{t}'" for t in histograms.HISTOGRAM_TYPES)
    sql = (f"SELECT {histograms.SERIES_SQL}, metric_type, data FROM records WHERE {{}} AND metric_type IN ({types}) "
           "ORDER BY timestamp, id")
    rows = list(conn.execute(sql.format(where), params))
    if not rows:
        return None
    # Cumulative series need their last point before the window as a baseline: look one window back.
    before_where, before_params = _where(rule, now_ns - int(rule.window_s * _NS))
    return histograms.window(rows, conn.execute(sql.format(before_where), before_params))


def _rate(conn: apsw.Connection, rule: AlertRule, where: str, params: list[Any]) -> float | None:
    if rule.source != "metrics":
        n = conn.execute(f"SELECT count(*) FROM records WHERE {where}", params).fetchone()[0]
        return n / rule.window_s
    rows = conn.execute(
        f"SELECT {histograms.SERIES_SQL} || coalesce(json_extract(data, '$.attributes'), ''), {rule.field} "
        "FROM records "
        f"WHERE {where} AND {rule.field} IS NOT NULL ORDER BY timestamp, id", params)
    last: dict[str, float] = {}
    increase = 0.0
    for series, value in rows:
        prev = last.get(series)
        if prev is not None:
            increase += value - prev if value >= prev else value  # a drop means the counter reset
        last[series] = value
    return increase / rule.window_s if last else None
