"""The dashboard's panel endpoints: overview, system metrics, AI and errors.

Each endpoint is a function ``(conn, params, ctx) -> dict`` over a read-only connection, run on the
request's handler thread. Figures come from the existing read side: ``query.status`` (collector
counters), ``ai_stats`` (the agent report, its rollup/raw aggregation and rollup listings), so the
dashboard shows the same numbers as ``otel-telemetry status`` / ``stats``. Time series over windows
of 6 h or more are read from the hourly/daily rollup tables; shorter ones from raw rows in one
grouped query. Every query is bounded: series have at most ``MAX_BUCKETS`` buckets and lists a LIMIT.
Record-level endpoints (traces, sessions, alerts, retention) are in ``records_api``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import apsw

from ..query import ai_stats
from ..query import filters as query
from ..store import rollups as ru
from ..store.retention import RetentionPolicy
from .params import NS, WINDOW, ApiError, Params

MAX_BUCKETS = 240
MAX_HOURLY_HOURS = 72
MAX_SERIES = 6
OTHER = "(other)"
_RAW_BUCKETS_S = (60, 300, 900, 1800, 3600)
# Host metrics (sdk/hostmetrics.py names): gauges averaged per bucket, cumulative counters turned into rates.
_CPU, _MEM = "system.cpu.utilization", "system.memory.utilization"
_DISK, _NET = "system.disk.io", "system.network.io"
# A cumulative counter's series is per collector instance (a device: its host's counters), so on a
# store several devices ship to, one device's bytes never hide behind another's larger counter.
_SYSTEM_SQL = (
    "SELECT timestamp - timestamp % ? AS b, name, json_extract(data, '$.attributes') AS attrs, "
    "avg(metric_value), max(metric_value), coalesce(instance, '') AS inst FROM records "
    "WHERE category = 'system_performance' AND timestamp >= ? AND timestamp < ? AND type = 'metric' "
    "AND name IN (?, ?, ?, ?){inst} GROUP BY b, name, attrs, inst ORDER BY b LIMIT 20000")
_RAW_COUNT_SQL = ("SELECT timestamp - timestamp % ? AS b, count(*), sum(level IN ('error', 'critical')) "
                  "FROM records WHERE timestamp >= ? AND timestamp < ?{inst} GROUP BY b ORDER BY b")
_RATE_SQL = "SELECT count(*) FROM records WHERE timestamp >= ? AND timestamp < ?{inst}"
# ``instance=NAME`` on a panel: one collector's rows (a central server's view). These panels'
# rollup reads do not filter by instance (the rollups key it only since issue 14's last round), so
# a filtered panel reads raw rows (through the server's (instance, timestamp) index).
INSTANCE = "instance"
# Records per collector instance in the window (a central server's view). The instances are found
# by hopping through the (instance, timestamp) index, one probe each, instead of grouping every row.
_BY_INSTANCE_SQL = (
    "WITH RECURSIVE i(name) AS (SELECT min(instance) FROM records WHERE instance IS NOT NULL "
    "UNION ALL SELECT (SELECT min(instance) FROM records WHERE instance > i.name) FROM i WHERE i.name IS NOT NULL) "
    "SELECT name, (SELECT count(*) FROM records WHERE instance = i.name AND timestamp >= ? AND timestamp < ?) "
    "FROM i WHERE name IS NOT NULL"
)


@dataclass
class Context:
    """What endpoints need besides the connection (set once at start, read by any thread)."""

    db_path: str
    alerts_path: str
    policy: RetentionPolicy = field(default_factory=RetentionPolicy)


Endpoint = Callable[[apsw.Connection, Params, Context], dict[str, Any]]


# ---- buckets and series ---------------------------------------------------------------------------

def raw_bucket_ns(span_ns: int) -> int:
    """The smallest raw-series bucket giving at most MAX_BUCKETS buckets over ``span_ns``."""
    for s in _RAW_BUCKETS_S:
        if span_ns // (s * NS) < MAX_BUCKETS:
            return s * NS
    return _RAW_BUCKETS_S[-1] * NS


def rollup_table(since: int, until: int) -> tuple[str, int]:
    """Hourly rollups for windows up to MAX_HOURLY_HOURS, else daily: merging hourly duration
    histograms of a week (~300k bins) alone would cost more than the 100 ms budget at 1M records."""
    if (until - since) // ru.HOUR_NS <= MAX_HOURLY_HOURS:
        return "rollup_hourly", ru.HOUR_NS
    return "rollup_daily", ru.DAY_NS


def bucket_starts(since: int, until: int, bucket: int) -> list[int]:
    first = since - since % bucket
    return list(range(first, until, bucket))[-MAX_BUCKETS:]


def use_rollups(conn: apsw.Connection, since: int, until: int) -> bool:
    return until - since >= ai_stats.SHORT_WINDOW_NS and ai_stats.has_rollups(conn)


def _window_out(since: int, until: int) -> dict[str, Any]:
    return {"since_ns": since, "until_ns": until, "since": query.iso_ns(since), "until": query.iso_ns(until)}


def aggregate(conn: apsw.Connection, since: int, until: int, flt: dict[str, str], calls_only: bool,
              group: tuple[str, ...]) -> tuple[int, ai_stats.Aggs, str]:
    """Per-bucket aggregates ``{(bucket, *rollup key): acc}`` of the window (bucket size, aggs, source):
    rollups summed per ``group`` for long windows, raw rows (full keys) for short ones."""
    bucket, aggs, source, jobs = aggregate_jobs(conn, since, until, flt, calls_only, group)
    ai_stats.fetch_all(conn, jobs)
    return bucket, aggs, source


def aggregate_jobs(conn: apsw.Connection, since: int, until: int, flt: dict[str, str], calls_only: bool,
                   group: tuple[str, ...]) -> tuple[int, ai_stats.Aggs, str, list[ai_stats.Job]]:
    """:func:`aggregate` as queries still to run (``aggs`` fills when they have run)."""
    aggs: ai_stats.Aggs = {}
    if INSTANCE not in flt and use_rollups(conn, since, until):
        table, bucket = rollup_table(since, until)
        first = since - since % bucket
        return bucket, aggs, "rollups", ai_stats._rollup_jobs(table, first, until, flt, calls_only, aggs, group,
                                                               keep_bucket=True)
    bucket = raw_bucket_ns(until - since)
    return bucket, aggs, "raw", ai_stats._raw_jobs(since, until, flt, calls_only, aggs, bucket)


def _top(totals: dict[str, float], n: int = MAX_SERIES) -> set[str]:
    return {k for k, _ in sorted(totals.items(), key=lambda t: (-t[1], t[0]))[:n]}


def _pct(hist: dict[int, int], p: int, lo: float | None, hi: float | None) -> float | None:
    return ru.hist_percentile(hist, p, lo, hi) if hist else None


# ---- overview -----------------------------------------------------------------------------------

def counters(status: dict[str, Any] | None) -> dict[str, Any]:
    """The headline counters from the collector's status body (``otel-telemetry status``)."""
    if status is None:
        return {}
    zmq = status.get("zmq") or {}
    rejected = int(status.get("rejected") or 0) + sum((zmq.get("rejected") or {}).values())
    for name in ("otlp_http", "otlp_grpc"):
        rejected += sum(((status.get(name) or {}).get("rejected") or {}).values())
    return {
        "received": status.get("received"), "stored": status.get("stored"),
        "duplicates": status.get("duplicates"),
        "dropped": int(status.get("dropped_rows") or 0) + sum((zmq.get("dropped") or {}).values()),
        "gaps": zmq.get("gaps_total", 0), "rejected": rejected, "queue_depth": status.get("queue_depth"),
        "uptime_s": status.get("uptime_s"), "updated": status.get("updated"), "age_s": status.get("age_s"),
        "errors": status.get("errors"),
    }


def count_series(conn: apsw.Connection, since: int, until: int, instance: str | None = None) -> dict[str, Any]:
    """Records (and errors) per bucket by record time: rollups for long windows, raw counts otherwise."""
    by: dict[int, list[int]] = {}
    if instance is None and use_rollups(conn, since, until):
        bucket, aggs, source = aggregate(conn, since, until, {}, False, ())
        for key, acc in aggs.items():
            c = by.setdefault(key[0], [0, 0])
            c[0] += acc[0]
            c[1] += acc[1]
    else:
        bucket, source = raw_bucket_ns(until - since), "raw"
        clause, args = query.instance_clause(instance)
        for b, n, errors in conn.execute(_RAW_COUNT_SQL.format(inst=clause), (bucket, since, until, *args)):
            by[b] = [n, errors or 0]
    starts = bucket_starts(since, until, bucket)
    return {"bucket_ns": bucket, "source": source, "buckets": starts,
            "count": [by.get(b, [0, 0])[0] for b in starts], "errors": [by.get(b, [0, 0])[1] for b in starts]}


def overview(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Collector status and counters, ingest rate (records timestamped in the last minute / 60 s) and
    records per bucket over the window."""
    since, until = p.window("24h")
    instance = p.text(INSTANCE)
    status = query.status(conn)
    if instance is not None and status is not None and "instances" in status:
        status = status["instances"].get(instance)  # a server: that collector's own status
    clause, args = query.instance_clause(instance)
    found: dict[str, list[Any]] = {}
    jobs: list[ai_stats.Job] = [(_RATE_SQL.format(inst=clause), [until - 60 * NS, until, *args],
                                 lambda rows: found.__setitem__("rate", rows))]
    # Only a central server keeps the (instance, timestamp) index; a device's file has one instance.
    # At most the window's last 24 h: counting index entries costs ~60 ms per million rows.
    start = max(since, until - 24 * 3600 * NS)
    if getattr(conn, "remote", False):
        jobs.append((_BY_INSTANCE_SQL, [start, until], lambda rows: found.__setitem__("by_instance", rows)))
    ai_stats.fetch_all(conn, jobs)  # one round trip to a server
    last_minute = found["rate"][0][0]
    series = count_series(conn, since, until, instance)
    by_instance = [{"instance": name, "records": n, "since": query.iso_ns(start)}
                   for name, n in found.get("by_instance", ())]
    return {"window": _window_out(since, until), "status": status, "counters": counters(status),
            "ingest_per_s": last_minute / 60, "records": series,
            "total": sum(series["count"]), "errors": sum(series["errors"]), "by_instance": by_instance}



# ---- system metrics -------------------------------------------------------------------------------

def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def _direction(attrs: dict[str, Any]) -> str:
    return str(attrs.get("disk.io.direction") or attrs.get("network.io.direction") or "total")


def system(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Host metrics per bucket: CPU busy (1 − idle share, or the value itself without ``cpu.mode``),
    memory used share, disk and network bytes/s (from cumulative counters: growth of each series'
    maximum between consecutive buckets)."""
    import orjson

    since, until = p.window("24h")
    clause, args = query.instance_clause(p.text(INSTANCE))
    bucket = raw_bucket_ns(until - since)
    cpu: dict[int, list[float]] = {}  # per bucket: one value per instance, averaged below
    cpu_plain: dict[int, list[float]] = {}  # CPU values without cpu.mode (used where no idle share is)
    mem: dict[int, list[float]] = {}
    cum: dict[tuple[str, str, str], dict[int, float]] = {}  # (name, series attrs, instance) -> bucket -> max
    for b, name, attrs_text, avg, mx, inst in conn.execute(_SYSTEM_SQL.format(inst=clause),
                                                       (bucket, since, until, _CPU, _MEM, _DISK, _NET, *args)):
        try:
            attrs = orjson.loads(attrs_text) if attrs_text else {}
        except orjson.JSONDecodeError:
            attrs = {}
        attrs = attrs if isinstance(attrs, dict) else {}
        if avg is None:
            continue
        if name == _CPU:
            mode = attrs.get("cpu.mode")
            if mode == "idle":
                cpu.setdefault(b, []).append(1.0 - avg)
            elif mode is None:
                cpu_plain.setdefault(b, []).append(avg)
        elif name == _MEM:
            if attrs.get("system.memory.state") in (None, "used"):
                mem.setdefault(b, []).append(avg)
        else:
            cum.setdefault((name, attrs_text or "", inst), {})[b] = mx
    starts = bucket_starts(since, until, bucket)
    rates: dict[str, dict[int, float]] = {}
    for (name, attrs_text, _inst_name), values in cum.items():
        try:
            attrs = orjson.loads(attrs_text) if attrs_text else {}
        except orjson.JSONDecodeError:
            attrs = {}
        label = ("disk_" if name == _DISK else "net_") + _direction(attrs if isinstance(attrs, dict) else {})
        out = rates.setdefault(label, {})
        prev: tuple[int, float] | None = None
        for b in sorted(values):
            if prev is not None and values[b] >= prev[1]:
                out[b] = out.get(b, 0.0) + (values[b] - prev[1]) / ((b - prev[0]) / NS)
            prev = (b, values[b])
    return {"window": _window_out(since, until), "bucket_ns": bucket, "buckets": starts,
            "cpu_busy": [_mean(cpu.get(b) or cpu_plain.get(b)) for b in starts],
            "memory_used": [_mean(mem.get(b)) for b in starts],
            "bytes_per_s": {k: [v.get(b) for b in starts] for k, v in sorted(rates.items())}}



# ---- AI ------------------------------------------------------------------------------------------

def ai(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """``ai_stats.report`` for the window (what ``stats --period/--agent/--model`` prints) plus tokens,
    cost, calls and latency p50/p95 per bucket, per model and per agent (busiest six, rest as (other))."""
    since, until = p.window("24h")
    agent, model, instance = p.text("agent"), p.text("model"), p.text(INSTANCE)
    flt = {k: v for k, v in (("agent", agent), ("model", model), (INSTANCE, instance)) if v is not None}
    # The series' queries go with the report's: one request to a server.
    bucket, aggs, source, jobs = aggregate_jobs(conn, since, until, flt, True, ("model", "agent"))
    try:
        report = ai_stats.report(conn, since, until, agent=agent, model=model, alerts_path=ctx.alerts_path,
                                 include_rollups=False, instance=instance, extra=jobs)
    except query.QueryError as exc:
        raise ApiError(str(exc)) from None
    starts = bucket_starts(since, until, bucket)
    index = {b: i for i, b in enumerate(starts)}
    totals: dict[str, dict[str, float]] = {"model": {}, "agent": {}}
    for key, acc in aggs.items():
        for dim, name in (("model", key[5]), ("agent", key[6])):
            n = name or ai_stats.NONE
            totals[dim][n] = totals[dim].get(n, 0) + acc[0]
    keep = {dim: _top(t) for dim, t in totals.items()}
    n = len(starts)
    series: dict[str, dict[str, dict[str, list[float]]]] = {"tokens": {"model": {}, "agent": {}},
                                                            "cost_usd": {"model": {}, "agent": {}},
                                                            "calls_by": {"model": {}, "agent": {}}}
    calls, failed = [0] * n, [0] * n
    hists: list[list[Any]] = [ru.new_agg() for _ in range(n)]
    for key, acc in aggs.items():
        i = index.get(key[0])
        if i is None:
            continue
        calls[i] += acc[0]
        failed[i] += acc[1]
        ru.merge_agg(hists[i], acc)
        for dim, name in (("model", key[5]), ("agent", key[6])):
            label = name or ai_stats.NONE
            label = label if label in keep[dim] else OTHER
            for metric, value in (("tokens", acc[11]), ("cost_usd", acc[12]), ("calls_by", acc[0])):
                row = series[metric][dim].setdefault(label, [0] * n)
                row[i] += value
    latency = {f"p{q}": [_pct(h[14], q, h[4], h[5]) for h in hists] for q in (50, 95)}
    return {"window": _window_out(since, until), "report": report,
            "series": {"bucket_ns": bucket, "source": source, "buckets": starts, "calls": calls,
                       "failed": failed, "latency_ms": latency, **series}}



# ---- errors --------------------------------------------------------------------------------------

MAX_COMPONENTS = 20


def _exception(rec: dict[str, Any]) -> dict[str, Any]:
    """Exception type/message of an error record from its events, attributes, status or log body."""
    data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
    attrs = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    etype, message = attrs.get("exception.type") or attrs.get("error.type"), attrs.get("exception.message")
    for ev in data.get("events") or []:
        if isinstance(ev, dict) and ev.get("name") == "exception":
            ea = ev.get("attributes") if isinstance(ev.get("attributes"), dict) else {}
            etype = etype or ea.get("exception.type")
            message = message or ea.get("exception.message")
            break
    body = data.get("body")
    message = message or rec.get("status_message") or (body if isinstance(body, str) else None)
    return {"type": None if etype is None else str(etype), "message": None if message is None else str(message)}


def errors(conn: apsw.Connection, p: Params, ctx: Context) -> dict[str, Any]:
    """Heat map of error_patterns records per component × hour (× day past 10 days; from rollups via
    ``ai_stats.listing``) and the latest error_patterns records with their exception."""
    since, until = p.window("24h")
    limit = p.integer("limit", 50, 1, 200)
    instance = p.text(INSTANCE)
    bucket = ru.HOUR_NS if until - since <= 10 * ru.DAY_NS else ru.DAY_NS
    flt = {"category": "error_patterns"} | ({INSTANCE: instance} if instance is not None else {})
    items = ai_stats.listing(conn, bucket, since, until, flt, instance is None and ai_stats.has_rollups(conn))
    starts = bucket_starts(since, until, bucket)
    index = {b: i for i, b in enumerate(starts)}
    cells: dict[str, list[int]] = {}
    for it in items:
        i = index.get(it["bucket_start_ns"])
        if i is None:
            continue
        row = cells.setdefault(it["component"] or "(none)", [0] * len(starts))
        row[i] += it["count"]
    top = sorted(cells, key=lambda c: (-sum(cells[c]), c))[:MAX_COMPONENTS]
    latest = query.query_records(conn, query.Filters(category="error_patterns", since_ns=since, until_ns=until,
                                                     limit=limit, instance=instance))
    keep = ("id", "time", "type", "component", "event", "level", "name", "service", "trace_id", "span_id",
            "session_id", "status_message")
    return {"window": _window_out(since, until), "bucket_ns": bucket, "buckets": starts,
            "components": top, "cells": [cells[c] for c in top],
            "total": sum(sum(r) for r in cells.values()),
            "latest": [{**{k: r[k] for k in keep}, "exception": _exception(r)} for r in latest]}



# name -> (function, accepted parameters); the server routes /api/<name> here.
PANELS: dict[str, tuple[Endpoint, tuple[str, ...]]] = {
    "overview": (overview, (*WINDOW, INSTANCE)),
    "system": (system, (*WINDOW, INSTANCE)),
    "ai": (ai, (*WINDOW, "agent", "model", INSTANCE)),
    "errors": (errors, (*WINDOW, "limit", INSTANCE)),
}
