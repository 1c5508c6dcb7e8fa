"""The component map (``otel-telemetry map``, the dashboard's map page) and the services page's
per-service figures, read from the call edges the writer maintains (``store/edges.py``).

A window reads daily edge buckets for the whole days inside it and hourly ones for the hours at
its ends, so its cost depends on the number of edges and days, not on the number of records. The
window is widened to whole hours (a bucket that starts inside it counts whole). Percentiles come
from the buckets' merged log-scale histograms (within 2 % of the exact value). A database without
edge tables (a central libSQL server, which gets rollups but not edges) is read from its raw spans
instead: exact, but its cost grows with the window's spans. So is one collector instance's map
(``instance``: a central store's per-device view), since the edges are not keyed by instance; its
node counts come from the rollups, which are. A server aggregates its spans itself, a day at a
time (never one row per span, which would cost ~35 bytes a cell over HTTP); a file's are grouped
by trace here.

Pure reads on the caller's connection and thread.
"""

from __future__ import annotations

import math
from typing import Any

import apsw
import orjson

from ..store import db as store_db
from ..store import edges as ed
from ..store import rollups as ru
from . import ai_stats
from .filters import QueryError, iso_ns, nearest_rank

BYS = ed.BYS
MAX_OPERATIONS = 20
MAX_LIST = 20
NODE_SCAN = 20_000  # the latest spans a node's details are drawn from
_NODE_COLUMN = {"service": "service", "component": "component"}  # identifier allow-list


def _has_edges(conn: apsw.Connection) -> bool:
    return all(store_db.has_table(conn, t) for t in ed.TABLES)



def parts(since: int, until: int) -> list[tuple[str, int, int]]:
    """(table suffix 'hourly'/'daily', first bucket start, end) covering ``[since, until)``: whole
    days from the daily tables, the hours before the first and after the last whole day hourly."""
    h0 = since - since % ru.HOUR_NS
    d0 = h0 if h0 % ru.DAY_NS == 0 else h0 - h0 % ru.DAY_NS + ru.DAY_NS
    d1 = until - until % ru.DAY_NS
    if d0 >= d1:
        return [("hourly", h0, until)]
    out = [("daily", d0, d1)]
    if h0 < d0:
        out.append(("hourly", h0, d0))
    if d1 < until:
        out.append(("hourly", d1, until))
    return out


Acc = list[Any]  # edges.new_acc(): [calls, errors, dur_count, dur_sum, hist dict, dur_min, dur_max]


def _merge(into: dict[Any, Acc], key: Any, calls: int, errors: int, n: int, total: float, hist: Any,
           lo: float | None, hi: float | None) -> None:
    a = into.get(key)
    if a is None:
        a = into[key] = ed.new_acc()
    if not isinstance(hist, dict):
        parsed: dict[int, int] = {}
        ru.hist_add(parsed, hist)
        hist = parsed
    ed.merge_acc(a, calls, errors, n, total, hist, lo, hi)


# The spans of a window aggregated where they are stored, each with its parent's (service,
# component) looked up by (trace, span) in the whole store: one row per kind of edge, with its
# duration histogram (rollups' log-scale bins, ``edges.make_child``, by SQL's ln() and ceil()) as
# "bin,count,..." text. Never one row per span: its rows cost ~35 bytes a cell on the wire.
_RAW_EDGES_SQL = (
    "SELECT b, svc, comp, k, has_parent, parent, err, sum(n) AS n, sum(CASE WHEN bin IS NOT NULL THEN n END) AS dn, "
    "sum(CASE WHEN bin IS NOT NULL THEN total END) AS ds, min(CASE WHEN bin IS NOT NULL THEN lo END) AS lo, "
    "max(CASE WHEN bin IS NOT NULL THEN hi END) AS hi, "
    "group_concat(CASE WHEN bin IS NOT NULL THEN bin || ',' || n END) AS h "
    "FROM (SELECT {bucket} AS b, coalesce(c.service, '') AS svc, coalesce(c.component, '') AS comp, "
    "coalesce(c.kind, '') AS k, coalesce(c.parent_span_id, '') != '' AS has_parent, "
    "(SELECT json_array(coalesce(p.service, ''), coalesce(p.component, '')) FROM records p "
    "WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_span_id AND p.type = 'span' LIMIT 1) AS parent, "
    "coalesce(c.status = 'error', 0) AS err, "
    "CASE WHEN typeof(c.duration_ms) IN ('integer', 'real') AND abs(c.duration_ms) < 1e308 THEN "
    "CASE WHEN c.duration_ms < ? THEN ? ELSE CAST(ceil(ln(c.duration_ms) / ?) AS INTEGER) END END AS bin, "
    "count(*) AS n, sum(c.duration_ms) AS total, min(c.duration_ms) AS lo, max(c.duration_ms) AS hi "
    "FROM records c WHERE c.type = 'span' AND coalesce(c.trace_id, '') != '' AND coalesce(c.span_id, '') != '' "
    "AND c.timestamp >= ? AND c.timestamp < ?{where} GROUP BY b, svc, comp, k, has_parent, parent, err, bin) "
    "GROUP BY b, svc, comp, k, has_parent, parent, err")
_RAW_FILTERS = ("category", "instance")  # identifier allow-list
_LOG_GAMMA = math.log(ru.GAMMA)  # as rollups computes its bins


def _raw_edges(conn: apsw.Connection, out: dict[tuple[Any, ...], Acc], since: int, until: int, by: str,
               category: str | None, bucket_ns: int | None, instance: str | None) -> None:
    """``edge_accs`` from the stored spans (no edge tables, or one instance's view): the edges
    into the window's spans, as ``edges.own`` and ``edges.pair`` count them. A server aggregates
    them itself (``_RAW_EDGES_SQL``; a parent counts wherever it is stored), a day of the window at
    a time: each answer stays far below the server's response limit, past which the connection
    would run the whole statement again through the cursor (``store.libsql_conn``)."""
    if not getattr(conn, "remote", False):
        # A file: its spans grouped by trace in Python, twice as fast here as the SQL's lookup of
        # each span's parent (bench/bench_views.py); a parent counts when it is in the same view.
        raw: ed.Aggs = {}
        where, params = "AND timestamp >= ? AND timestamp < ?", [since, until]
        if instance is not None:
            where += " AND instance = ?"
            params.append(instance)
        ed.by_trace(conn.execute(ed.TRACE_SPANS_SQL.format(where=where), params), raw, bucket_ns)
        for (b, kind, cat, src, dst), a in raw.items():
            if kind == by and (category is None or cat == category):
                _merge(out, (b, src, dst), *a)
        return
    lo = since
    while lo < until:  # each UTC day of the window
        hi = min(lo - lo % ru.DAY_NS + ru.DAY_NS, until)
        _raw_slice(conn, out, lo, hi, by, category, bucket_ns, instance)
        lo = hi


def _raw_slice(conn: apsw.Connection, out: dict[tuple[Any, ...], Acc], since: int, until: int, by: str,
               category: str | None, bucket_ns: int | None, instance: str | None) -> None:
    params: list[Any] = [] if bucket_ns is None else [bucket_ns]
    params += [ru.MIN_MS, ru.ZERO_BIN, _LOG_GAMMA, since, until]
    where = ""
    for column, value in zip(_RAW_FILTERS, (category, instance), strict=True):
        if value is not None:
            where += f" AND c.{column} = ?"
            params.append(value)
    bucket = "0" if bucket_ns is None else "c.timestamp - c.timestamp % ?"
    for b, svc, comp, kind, has_parent, parent, err, calls, n, total, lo, hi, bins in conn.execute(
            _RAW_EDGES_SQL.format(bucket=bucket, where=where), params):
        if parent is not None:
            psvc, pcomp = orjson.loads(parent)
        if by == ed.ENTRY:
            if not (kind in ed.ENTRY_KINDS or not has_parent or (parent is not None and psvc != svc)):
                continue
            key = (b, "", svc)
        elif parent is None or (psvc == svc if by == "service" else pcomp == comp):
            continue
        else:
            key = (b, psvc, svc) if by == "service" else (b, pcomp, comp)
        hist: dict[int, int] = {}
        if bins:
            pairs = bins.split(",")
            for i in range(0, len(pairs), 2):
                hist[int(pairs[i])] = hist.get(int(pairs[i]), 0) + int(pairs[i + 1])
        _merge(out, key, calls, calls if err else 0, n or 0, float(total or 0.0), hist, lo, hi)


def edge_accs(conn: apsw.Connection, since: int, until: int, by: str, category: str | None = None,
              bucket_ns: int | None = None, instance: str | None = None) -> dict[tuple[Any, ...], Acc]:
    """``{(bucket, source, target): acc}`` of the window's edges of kind ``by`` (service,
    component or entry). ``bucket_ns`` None sums the whole window into bucket 0; otherwise
    buckets of that size (an hour or a day: the tables' own). ``instance``: only the spans that
    collector instance stored (read raw)."""
    if by not in (*BYS, ed.ENTRY):
        raise QueryError(f"by must be one of {', '.join(BYS)}, got {by!r}")
    out: dict[tuple[Any, ...], Acc] = {}
    if instance is not None or not _has_edges(conn):
        _raw_edges(conn, out, since, until, by, category, bucket_ns, instance)
        return out
    ranges = parts(since, until) if bucket_ns is None or bucket_ns >= ru.DAY_NS else [
        ("hourly", since - since % ru.HOUR_NS, until)]
    for suffix, lo, hi in ranges:
        sql = (f"SELECT bucket_start_ns, source, target, calls, errors, dur_count, dur_sum, hist, dur_min, dur_max "
               f"FROM edge_{suffix} WHERE bucket_start_ns >= ? AND bucket_start_ns < ? AND by = ?")
        params: list[Any] = [lo, hi, by]
        if category is not None:
            sql += " AND category = ?"
            params.append(category)
        for b, src, dst, calls, errors, n, total, hist, lo, hi in conn.execute(sql, params):
            key_b = 0 if bucket_ns is None else b - b % bucket_ns
            _merge(out, (key_b, src, dst), calls, errors, n, total, hist, lo, hi)
    return out


def _pct(a: Acc, p: int) -> float | None:
    """Percentile ``p`` of an accumulator's histogram, clamped to the exact min/max (so a single
    value, or an edge whose spans all took the same time, is exact)."""
    return None if not a[4] else round(ru.hist_percentile(a[4], p, a[5], a[6]) or 0.0, 3)


def _node_counts(conn: apsw.Connection, since: int, until: int, by: str, category: str | None,
                 instance: str | None = None) -> dict[str, list[int]]:
    """Spans and error-level spans per service/component in the window, from the rollups."""
    col = _NODE_COLUMN[by]
    out: dict[str, list[int]] = {}
    if not ai_stats.has_rollups(conn) or (instance is not None and not ai_stats.rollups_by_instance(conn)):
        sql = (f"SELECT coalesce({col}, ''), count(*), sum(level IN ('error', 'critical')) FROM records "
               "WHERE type = 'span' AND timestamp >= ? AND timestamp < ?")
        params: list[Any] = [since, until]
        for column, value in (("category", category), ("instance", instance)):  # two constant names
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        return {n: [c, e or 0] for n, c, e in conn.execute(sql + " GROUP BY 1", params)}
    for suffix, lo, hi in parts(since, until):
        sql = (f"SELECT {col}, sum(count), sum(errors) FROM rollup_{suffix} WHERE bucket_start_ns >= ? "
               "AND bucket_start_ns < ? AND type = 'span'")
        params = [lo, hi]
        for column, value in (("category", category), ("instance", instance)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        for name, calls, errors in conn.execute(sql + " GROUP BY 1", params):
            a = out.setdefault(name, [0, 0])
            a[0] += calls
            a[1] += errors
    return out


def service_map(conn: apsw.Connection, since: int, until: int, by: str = "service",
                category: str | None = None, instance: str | None = None) -> dict[str, Any]:
    """``{"nodes": [{name, calls, errors}], "edges": [{source, target, calls, errors, p50_ms,
    p95_ms}]}`` over ``[since, until)``: nodes are every service (component) with spans in the
    window (calls: its spans, errors: those at level error), edges every parent -> child pair
    across two of them (calls: child spans, errors: those with status error, latency: the child
    spans' durations). Sorted by calls, then name."""
    if by not in BYS:
        raise QueryError(f"by must be one of {', '.join(BYS)}, got {by!r}")
    accs = edge_accs(conn, since, until, by, category, instance=instance)
    counts = _node_counts(conn, since, until, by, category, instance)
    for _, src, dst in accs:
        for name in (src, dst):
            counts.setdefault(name, [0, 0])
    nodes = [{"name": n, "calls": c, "errors": e} for n, (c, e) in counts.items()]
    nodes.sort(key=lambda x: (-x["calls"], x["name"]))
    edges = [{"source": src, "target": dst, "calls": a[0], "errors": a[1], "p50_ms": _pct(a, 50),
              "p95_ms": _pct(a, 95)} for (_, src, dst), a in accs.items()]
    edges.sort(key=lambda x: (-x["calls"], x["source"], x["target"]))
    return {"nodes": nodes, "edges": edges}


def to_dot(m: dict[str, Any]) -> str:
    """Graphviz text of a ``service_map`` result (names quoted, so any name is safe)."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    lines = ["digraph map {", "  rankdir=LR;", "  node [shape=box];"]
    for n in m["nodes"]:
        label = f"{n['name']}\n{n['calls']} calls, {n['errors']} errors"
        lines.append(f"  {q(n['name'])} [label={q(label)}];")
    for e in m["edges"]:
        label = f"{e['calls']} calls, {e['errors']} err, p95 {e['p95_ms']} ms"
        lines.append(f"  {q(e['source'])} -> {q(e['target'])} [label={q(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- a node's details (the dashboard's click) ---------------------------------------------------

def node_detail(conn: apsw.Connection, since: int, until: int, by: str, name: str,
                instance: str | None = None) -> dict[str, Any]:
    """A node's operations (span names: count, errors, p50/p95 exact), latest failed spans and
    latest traces, drawn from its latest ``NODE_SCAN`` spans in the window (``sampled`` says when
    there were more)."""
    col = _NODE_COLUMN.get(by)
    if col is None:
        raise QueryError(f"by must be one of {', '.join(BYS)}, got {by!r}")
    inst = "" if instance is None else " AND instance = ?"
    rows = conn.execute(
        f"SELECT timestamp, name, trace_id, span_id, duration_ms, status, status_message FROM records "
        f"WHERE type = 'span' AND {col} = ? AND timestamp >= ? AND timestamp < ?{inst} ORDER BY timestamp DESC "
        f"LIMIT ?", (name, since, until, *(() if instance is None else (instance,)), NODE_SCAN + 1)).fetchall()
    sampled = len(rows) > NODE_SCAN
    rows = rows[:NODE_SCAN]
    ops: dict[str, list[Any]] = {}
    for _ts, op, _t, _s, dur, status, _m in rows:
        a = ops.setdefault(op or "", [0, 0, []])
        a[0] += 1
        a[1] += status == "error"
        if dur is not None:
            a[2].append(dur)
    operations = []
    for op, (n, errs, durs) in ops.items():
        durs.sort()
        operations.append({"name": op, "calls": n, "errors": errs, "p50_ms": nearest_rank(durs, 50),
                           "p95_ms": nearest_rank(durs, 95)})
    operations.sort(key=lambda x: (-x["calls"], x["name"]))
    errors = [{"time": iso_ns(ts), "name": op, "trace_id": t, "span_id": s, "message": m}
              for ts, op, t, s, _d, status, m in rows if status == "error"][:MAX_LIST]
    # The latest traces, each shown by the node's longest span in it (its entry span, usually).
    traces: dict[str, dict[str, Any]] = {}
    for ts, op, t, _s, dur, status, _m in rows:
        if not t or (t not in traces and len(traces) >= MAX_LIST):
            continue
        cur = traces.get(t)
        if cur is None or (dur or 0) > (cur["duration_ms"] or 0):
            traces[t] = {"trace_id": t, "time": iso_ns(ts), "name": op, "duration_ms": dur, "status": status}
    return {"name": name, "by": by, "spans": len(rows), "sampled": sampled,
            "operations": operations[:MAX_OPERATIONS], "errors": errors, "traces": list(traces.values())}



# ---- the services page ----------------------------------------------------------------------------

MAX_HOURLY_HOURS = 72


def services(conn: apsw.Connection, since: int, until: int, category: str | None = None,
             instance: str | None = None) -> dict[str, Any]:
    """Per service, its entry spans (server or consumer kind, roots, spans called from another
    service) over the window and per bucket (hours up to 72 h, else days): calls, errors (status
    error), rate per second and p50/p95 duration (within 2 %). The window is widened to whole hours."""
    bucket = ru.HOUR_NS if (until - since) // ru.HOUR_NS <= MAX_HOURLY_HOURS else ru.DAY_NS
    first = since - since % bucket
    starts = list(range(first, until, bucket))
    per = edge_accs(conn, since, until, ed.ENTRY, category, bucket_ns=bucket, instance=instance)
    totals = edge_accs(conn, since, until, ed.ENTRY, category, instance=instance)
    seconds = (until - (since - since % ru.HOUR_NS)) / 1e9
    index = {b: k for k, b in enumerate(starts)}
    out = []
    for (_, _src, name), a in totals.items():
        series: dict[str, list[Any]] = {k: [None] * len(starts) for k in ("calls", "errors", "p50_ms", "p95_ms")}
        for (b, _s, n), x in per.items():
            if n == name and b in index:
                k = index[b]
                series["calls"][k], series["errors"][k] = x[0], x[1]
                series["p50_ms"][k], series["p95_ms"][k] = _pct(x, 50), _pct(x, 95)
        out.append({"service": name, "calls": a[0], "errors": a[1],
                    "error_rate": a[1] / a[0] if a[0] else None,
                    "rate_per_s": a[0] / seconds, "p50_ms": _pct(a, 50), "p95_ms": _pct(a, 95),
                    "series": series})
    out.sort(key=lambda x: (-x["calls"], x["service"]))
    return {"since": iso_ns(since), "until": iso_ns(until), "bucket_ns": bucket, "buckets": starts,
            "services": out}
