"""Any stored metric by name, over a window, grouped by one attribute (``otel-telemetry metrics``, the
dashboard's metrics explorer): the same numbers for both.

A series is one (collector instance, resource identity, service, point attributes) combination:
the resource identity is its ``service.instance.id``, ``host.name`` and ``process.pid`` where the
app sets them, so two devices (or processes) counting the same thing are two series, and one's
cumulative points are never read as the other's resets. Per bucket and per group:

* counters (monotonic sums): ``sum`` is what the group's series counted in the bucket (delta
  points added; cumulative points as the increase over the series' previous point, a drop being a
  reset whose new value counts whole, the first point of a series without an earlier one counting
  whole), ``rate`` that per second;
* gauges (and non-monotonic sums): ``last`` (the latest point of the group), ``avg``, ``max``,
  ``min`` of the points;
* histograms: ``p50``/``p95``/``p99`` (and ``avg``, ``count``, ``sum``, ``min``, ``max``) from
  the merged buckets of what was recorded in the bucket (``query/histograms.py``, the same as the
  alert rules).

Each group's ``value`` is the same aggregation over the whole window (for counters the sum of
the buckets; for histograms the window's merged buckets). Cumulative series are continued from
their last point before the window (looked up one window back). Groups: every value of the
``group_by`` point attribute (``service`` means the service), ``(none)`` where it is missing;
the ``MAX_GROUPS`` largest are kept and the ``truncated`` flag says so.

Pure reads on the caller's connection and thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw
import orjson

from . import histograms
from .filters import QueryError, instance_clause, iso_ns

NS = 1_000_000_000
MAX_BUCKETS = 240
MAX_GROUPS = 12
MAX_POINTS = 2_000_000  # points read per request (the window and the one before it)
NONE = "(none)"
_BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
_DELTA = ("delta", 1)
COUNTER_AGGS = ("sum", "rate")
GAUGE_AGGS = ("last", "avg", "max", "min")
HISTOGRAM_AGGS = ("p50", "p95", "p99", "avg", "count", "sum", "min", "max")
AGGS = tuple(dict.fromkeys(COUNTER_AGGS + GAUGE_AGGS + HISTOGRAM_AGGS))
_POINTS_SQL = ("SELECT timestamp, service, metric_type, metric_value, data, " + histograms.SERIES_SQL + " FROM records "
               "WHERE type = 'metric' AND name = ? AND timestamp >= ? AND timestamp < ?{inst} ORDER BY timestamp, id "
               "LIMIT ?")


def bucket_ns(span_ns: int) -> int:
    """The smallest bucket giving at most MAX_BUCKETS buckets over ``span_ns``."""
    for s in _BUCKETS_S:
        if span_ns // (s * NS) < MAX_BUCKETS:
            return s * NS
    return _BUCKETS_S[-1] * NS


def names(conn: apsw.Connection, since: int, until: int, instance: str | None = None) -> list[dict[str, Any]]:
    """The metrics with points in the window: name, type, unit, points, services."""
    inst, args = instance_clause(instance)
    rows = conn.execute(
        "SELECT name, metric_type, max(metric_unit), count(*), count(DISTINCT service) FROM records "
        f"WHERE type = 'metric' AND timestamp >= ? AND timestamp < ? AND name IS NOT NULL{inst} "
        "GROUP BY name, metric_type ORDER BY name, metric_type", (since, until, *args)).fetchall()
    return [{"name": n, "type": t, "unit": u, "points": c, "services": s} for n, t, u, c, s in rows]


def kind_of(mtype: str, monotonic: bool) -> str:
    """counter | gauge | histogram: which aggregations apply."""
    if mtype in histograms.HISTOGRAM_TYPES:
        return "histogram"
    return "counter" if mtype == "sum" and monotonic else "gauge"


def aggs_for(kind: str) -> tuple[str, ...]:
    return {"counter": COUNTER_AGGS + GAUGE_AGGS, "gauge": GAUGE_AGGS, "histogram": HISTOGRAM_AGGS}[kind]


def _default(kind: str) -> str:
    return {"counter": "rate", "gauge": "last", "histogram": "p95"}[kind]


class _Point:
    __slots__ = ("data", "delta", "group", "key", "raw", "series", "service", "ts", "value")

    def __init__(self, ts: int, service: str | None, value: Any, raw: str, data: dict[str, Any],
                 group_by: str | None, series: str | None = None) -> None:
        self.ts, self.service, self.value, self.raw, self.data = ts, service, value, raw, data
        self.series = series  # histograms.SERIES_SQL: service, instance, resource identity
        attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
        self.key = orjson.dumps([series, attrs], option=orjson.OPT_SORT_KEYS).decode()
        self.delta = data.get("temporality") in _DELTA
        if group_by is None:
            self.group = "(all)"
        elif group_by == "service":
            self.group = service if service is not None else NONE
        else:
            v = attrs.get(group_by)
            self.group = NONE if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()


def _points(conn: apsw.Connection, name: str, lo: int, hi: int, group_by: str | None,
            mtype: str | None, instance: str | None = None) -> tuple[list[_Point], str | None, bool]:
    out: list[_Point] = []
    monotonic = False
    inst, args = instance_clause(instance)
    for ts, service, t, value, raw, series in conn.execute(_POINTS_SQL.format(inst=inst),
                                                          (name, lo, hi, *args, MAX_POINTS)):
        if mtype is None:
            mtype = t
        if t != mtype:  # one name, one type: points of another type (a changed instrument) are skipped
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        monotonic = monotonic or bool(data.get("monotonic"))
        out.append(_Point(ts, service, value, raw, data, group_by, series))
    return out, mtype, monotonic


def _counter(points: Sequence[_Point], last: dict[str, float]) -> float:
    """What ``points`` (time order) counted; ``last`` (series -> previous cumulative value) is updated."""
    total = 0.0
    for p in points:
        if not isinstance(p.value, int | float):
            continue
        v = float(p.value)
        if p.delta:
            total += v
            continue
        prev = last.get(p.key)
        total += v if prev is None or v < prev else v - prev
        last[p.key] = v
    return total


def _gauge(points: Sequence[_Point], agg: str) -> float | None:
    vals = [float(p.value) for p in points if isinstance(p.value, int | float)]
    if not vals:
        return None
    if agg == "last":
        return vals[-1]
    if agg == "avg":
        return sum(vals) / len(vals)
    return max(vals) if agg == "max" else min(vals)


def _hist(points: Sequence[_Point], mtype: str, agg: str, last: dict[str, _Point]) -> float | None:
    keys = {q.key for q in points}
    before = [(p.series, mtype, p.raw) for k, p in last.items() if k in keys]
    w = histograms.window([(p.series, mtype, p.raw) for p in points], before)
    for p in points:
        if not p.delta:
            last[p.key] = p
    return histograms.aggregate(w, agg)


def _value(points: Sequence[_Point], kind: str, mtype: str, agg: str, seconds: float,
           counters: dict[str, float], hists: dict[str, _Point]) -> float | None:
    if kind == "histogram":
        return _hist(points, mtype, agg, hists) if points else None
    if agg in COUNTER_AGGS:
        if not points:
            return 0.0
        n = _counter(points, counters)
        return n if agg == "sum" else n / seconds
    return _gauge(points, agg)


def series(conn: apsw.Connection, name: str, since: int, until: int, agg: str | None = None,
           group_by: str | None = None, instance: str | None = None) -> dict[str, Any]:
    """The metric's window value and per-bucket series per group (see the module docstring);
    ``instance``: only the points that collector instance stored."""
    if group_by is not None and not group_by.strip():
        raise QueryError("group by needs an attribute name")
    points, mtype, monotonic = _points(conn, name, since, until, group_by, None, instance)
    if mtype is None:
        raise QueryError(f"no metric named {name!r} in this window (otel-telemetry metrics lists them)")
    kind = kind_of(mtype, monotonic)
    agg = agg or _default(kind)
    if agg not in aggs_for(kind):
        raise QueryError(f"--agg {agg} does not apply to {name!r} ({kind}); use one of {', '.join(aggs_for(kind))}")
    before, _, _ = _points(conn, name, max(-(2**63), 2 * since - until), since, group_by, mtype, instance)
    bucket = bucket_ns(until - since)
    first = since - since % bucket
    starts = list(range(first, until, bucket))
    groups: dict[str, list[_Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)
    out = []
    for g, pts in groups.items():
        # The state each series carries from one bucket into the next, seeded by the points before.
        counters: dict[str, float] = {}
        hists: dict[str, _Point] = {}
        prior = [p for p in before if p.group == g]
        _counter(prior, counters)
        for p in prior:
            if not p.delta:
                hists[p.key] = p
        total = _value(pts, kind, mtype, agg, (until - since) / NS, dict(counters), dict(hists))
        per: list[list[_Point]] = [[] for _ in starts]
        for p in pts:
            per[(p.ts - first) // bucket].append(p)
        values = []
        for k, bp in enumerate(per):
            lo, hi = max(starts[k], since), min(starts[k] + bucket, until)
            values.append(_value(bp, kind, mtype, agg, (hi - lo) / NS, counters, hists) if bp or agg in COUNTER_AGGS
                          else None)
        out.append({"group": g, "value": total, "points": len(pts), "series": values})
    out.sort(key=lambda x: (-(x["value"] if x["value"] is not None else float("-inf")), x["group"]))
    return {"name": name, "type": mtype, "kind": kind, "agg": agg, "aggs": list(aggs_for(kind)),
            "group_by": group_by, "since": iso_ns(since), "until": iso_ns(until), "since_ns": since,
            "until_ns": until, "bucket_ns": bucket, "buckets": starts, "groups": out[:MAX_GROUPS],
            "truncated": len(out) > MAX_GROUPS or len(points) >= MAX_POINTS}
