"""Agent/dev metrics over a window (``otel-telemetry stats --period``), fast at millions of records.

A *call* is a span that is a GenAI model/tool/agent call: its ``event`` is ``model_call``,
``tool_call`` or ``agent_call``, or it has a ``model`` or ``agent`` (see ``store/rollups.py``
for its kind), whatever its category: a failed call is filed under ``error_patterns``, and
``category="ai_behavior"`` still counts it. Success rate = calls whose status is not error / all
calls.

Sources. Windows shorter than 6 h are read from raw rows and their percentiles are exact
(nearest rank, as ``query.stats``). Longer windows are cut into whole UTC days (``rollup_daily``),
whole hours (``rollup_hourly``) and at most two partial hours at the edges (raw rows): counts,
errors, tokens and costs are exact for the window (sums in another order may differ in the last
bit of a float); percentiles come from merged duration histograms and are within
``rollups.ALPHA`` (2 %) relative error of the exact nearest-rank value. Rollups are kept after
their raw rows are purged (400 days by default), so for windows older than raw retention the
rollup figures remain while raw-only edges are empty.

Report keys (``report()``, also the CLI's json):

- ``since``/``until`` (ISO), ``since_ns``/``until_ns``, ``period``, ``filters`` {agent, model,
  category}, ``source`` ("raw" | "rollups");
- ``calls`` {total, succeeded, failed, success_rate, by_kind{kind: {calls, failed}}};
- ``latency_ms`` {count, p50, p95, p99, min, max, mean, exact, max_relative_error};
- ``cost_usd`` {total, priced_calls, unpriced_model_calls (calls with a model but no cost)};
- ``tokens`` {input, output, cache_read, cache_write, reasoning, total};
- ``by_model`` / ``by_agent`` {name: {calls, failed, cost_usd, total_tokens, p95_ms}}, busiest
  first, ``(none)`` for calls without one; ``top_agent`` {agent, calls} or null;
- ``failed_calls`` {total, by_error_type{type: n}}; ``alerts`` {state_file, firing[...], rules[...]
  (every rule the collector evaluates, the default AI rules included, with state and value), error};
- ``rollups`` {hourly: hours overlapping the window's last 24 h, daily: days overlapping the
  window}, items {bucket_start, bucket_start_ns, category, component, service, count, errors,
  p95_ms} over all records (not only calls) with the same filters; buckets are whole, so the
  first and last may include records just outside the window.

Every function runs on the caller's thread with its read-only connection. The report as text
(csv rows, the table for people) is ``ai_stats_text``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from ..store import rollups as ru
from ..store.db import has_table
from .filters import PERCENTILES, QueryError, iso_ns, nearest_rank

SHORT_WINDOW_NS = 6 * ru.HOUR_NS
LISTING_HOURS_NS = ru.DAY_NS
NONE = "(none)"
_TOKENS = ("input", "output", "cache_read", "cache_write", "reasoning", "total")
# A GenAI call whatever its category (a failed one is filed under error_patterns); alert rules'
# ``source: calls`` use the same definition.
CALL_SQL = ("type = 'span' AND (model IS NOT NULL OR agent IS NOT NULL OR event IN "
             f"({', '.join(repr(e) for e in ru.CALL_EVENTS)}))")
Aggs = dict[tuple[Any, ...], list[Any]]
_CALL_GROUP = ("model", "agent", "call", "error_type")  # all a report's call figures need


def has_rollups(conn: apsw.Connection) -> bool:
    return all(has_table(conn, t) for t in ru.TABLES)


def rollups_by_instance(conn: apsw.Connection) -> bool:
    """True when the rollups carry the ``instance`` key (files and servers upgraded since issue 14)."""
    sql = "SELECT 1 FROM pragma_table_info('rollup_hourly') WHERE name = 'instance'"  # one row, not ~20
    return conn.execute(sql).fetchone() is not None


def _filter_sql(flt: dict[str, str]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for col in ("agent", "model", "category", "instance"):  # identifiers from this allow-list only
        if flt.get(col) is not None:
            clauses.append(f"{col} = ?")
            params.append(flt[col])
    return "".join(f" AND {c}" for c in clauses), params


_SUMS_SQL = ", ".join(
    f"{f}({c})" for f, c in zip(("sum",) * 4 + ("min", "max") + ("sum",) * 8, ru.SUM_COLUMNS[:-1], strict=True))
_LEAN_SQL = "sum(count), sum(errors), min(dur_min), max(dur_max)"
# Concatenate the stored [bin, count, ...] arrays of a group into one (skipping empty ones).
_HIST_SQL = "'[' || coalesce(group_concat(nullif(substr(hist, 2, length(hist) - 2), ''), ','), '') || ']'"


# A query and what to do with its rows: the report sends all of its queries at once
# (``fetch_all``: one round trip to a libSQL server), then consumes their rows.
Job = tuple[str, list[Any], Callable[[list[Any]], None]]


def fetch_all(conn: apsw.Connection, jobs: Sequence[Job]) -> None:
    """Run ``jobs``' queries, then hand each its rows: one request on a server, a loop on a file."""
    many = getattr(conn, "execute_all", None)
    if many is not None:
        cursors = many([(sql, params) for sql, params, _ in jobs])
        for (_, _, consume), cur in zip(jobs, cursors, strict=True):
            consume(cur.fetchall())
        return
    for sql, params, consume in jobs:
        consume(conn.execute(sql, params).fetchall())


def _rollup_aggs(conn: apsw.Connection, table: str, a: int, b: int, flt: dict[str, str],
                 calls_only: bool, out: Aggs, group: Sequence[str], keep_bucket: bool) -> None:
    """Add the rollup rows of buckets in [a, b) into ``out``, summed in SQL per ``group`` columns
    (the other key columns read as ``''``; the bucket as 0 unless ``keep_bucket``)."""
    fetch_all(conn, _rollup_jobs(table, a, b, flt, calls_only, out, group, keep_bucket))


def _rollup_jobs(table: str, a: int, b: int, flt: dict[str, str], calls_only: bool, out: Aggs,
                 group: Sequence[str], keep_bucket: bool, lean: bool = False) -> list[Job]:
    """:func:`_rollup_aggs` as a job (none for an empty range). ``lean``: only count, errors,
    min/max and the histogram are read (the other sums read as 0): what a listing shows.

    Only the grouped columns are selected, not the other keys' constant ``''``: on a server every
    cell is JSON to encode and decode, so fewer cells is less time (issue 14, docs/benchmarks.md).
    """
    if table not in ru.TABLES or a >= b or not set(group) <= set(ru.KEY_COLUMNS):
        return []
    extra, params = _filter_sql(flt)
    if calls_only:
        extra += " AND call != ''"
    # Identifiers: the table and group columns are checked against allow-lists above.
    grouped = [c for c in ru.KEY_COLUMNS if c in group]
    by = ", ".join((["bucket_start_ns"] if keep_bucket else []) + grouped)
    sums = _LEAN_SQL if lean else _SUMS_SQL
    sql = (f"SELECT {', '.join((['bucket_start_ns'] if keep_bucket else []) + grouped + [sums, _HIST_SQL])} "
           f"FROM {table} WHERE bucket_start_ns >= ? AND bucket_start_ns < ?{extra}"
           + (f" GROUP BY {by}" if by else ""))
    slots = [1 + ru.KEY_COLUMNS.index(c) for c in grouped]  # where each selected key goes
    nk = len(slots) + keep_bucket
    blank = [0, *([""] * len(ru.KEY_COLUMNS))]

    def consume(rows: list[Any]) -> None:
        for row in rows:
            if row[nk] is None:  # no rows at all (aggregate without GROUP BY)
                continue
            k = blank.copy()
            if keep_bucket:
                k[0] = row[0]
            for j, slot in enumerate(slots, keep_bucket):
                k[slot] = row[j]
            key = tuple(k)
            if lean:
                count, errors, lo, hi, encoded = row[nk:]
                vals = [count, errors, 0, 0.0, lo, hi, 0, 0, 0, 0, 0, 0, 0.0, 0, encoded]
            else:
                vals = list(row[nk:])
            hist: dict[int, int] = {}
            ru.hist_add(hist, vals[14])
            vals[14] = hist
            acc = out.get(key)
            if acc is None:
                out[key] = vals
            else:
                ru.merge_agg(acc, vals)

    return [(sql, [a, b, *params], consume)]


def _raw_aggs(conn: apsw.Connection, a: int, b: int, flt: dict[str, str], calls_only: bool,
              out: Aggs, bucket_ns: int | None,
              durations: list[tuple[tuple[Any, ...], float]] | None = None) -> None:
    fetch_all(conn, _raw_jobs(a, b, flt, calls_only, out, bucket_ns, durations))


def _raw_jobs(a: int, b: int, flt: dict[str, str], calls_only: bool, out: Aggs, bucket_ns: int | None,
              durations: list[tuple[tuple[Any, ...], float]] | None = None) -> list[Job]:
    if a >= b:
        return []
    extra, params = _filter_sql(flt)
    if calls_only:
        extra += f" AND {CALL_SQL}"
    sql = f"SELECT {ru.SELECT_INPUT} FROM records WHERE timestamp >= ? AND timestamp < ?{extra}"

    def consume(rows: list[Any]) -> None:
        for r in rows:
            ru.add_input(out, r, bucket_ns, durations)

    return [(sql, [a, b, *params], consume)]


def decompose(since: int, until: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]],
                                               list[tuple[int, int]]]:
    """Split [since, until) into raw edges, whole hours and whole days (each a list of ranges)."""
    hs, hu = -(-since // ru.HOUR_NS) * ru.HOUR_NS, until // ru.HOUR_NS * ru.HOUR_NS
    if hs >= hu:
        return [(since, until)], [], []
    raw = [r for r in ((since, hs), (hu, until)) if r[0] < r[1]]
    ds, du = -(-hs // ru.DAY_NS) * ru.DAY_NS, hu // ru.DAY_NS * ru.DAY_NS
    if ds >= du:
        return raw, [(hs, hu)], []
    hourly = [r for r in ((hs, ds), (du, hu)) if r[0] < r[1]]
    return raw, hourly, [(ds, du)]


def _pcts(hist: dict[int, int], lo: float | None, hi: float | None,
          exact: list[float] | None) -> dict[str, float | None]:
    if exact is not None:
        exact.sort()
        return {f"p{p}": nearest_rank(exact, p) for p in PERCENTILES}
    return {f"p{p}": ru.hist_percentile(hist, p, lo, hi) for p in PERCENTILES}


def _group(name: str, acc: dict[str, list[Any]]) -> list[Any]:
    g = acc.get(name)
    if g is None:
        acc[name] = g = ru.new_agg()
    return g


def summarise(aggs: Aggs, durations: list[tuple[tuple[Any, ...], float]] | None) -> dict[str, Any]:
    """The call figures of a report from window aggregates (and exact durations if raw)."""
    total = ru.new_agg()
    kinds: dict[str, list[Any]] = {}
    models: dict[str, list[Any]] = {}
    agents: dict[str, list[Any]] = {}
    etypes: dict[str, int] = {}
    for key, a in aggs.items():
        model, agent, call, etype = key[5], key[6], key[7], key[8]
        if not call:
            continue
        for g in (total, _group(call, kinds), _group(model or NONE, models), _group(agent or NONE, agents)):
            ru.merge_agg(g, a)
        if etype:
            etypes[etype] = etypes.get(etype, 0) + a[0]
    exact: dict[str, list[float]] | None = None
    if durations is not None:
        exact = {"": []}
        for key, d in durations:
            if key[6]:
                exact[""].append(d)
                exact.setdefault("a:" + (key[5] or NONE), []).append(d)
                exact.setdefault("m:" + (key[4] or NONE), []).append(d)

    def per(groups: dict[str, list[Any]], prefix: str) -> dict[str, dict[str, Any]]:
        out = {}
        for name in sorted(groups, key=lambda n: (-groups[n][0], n)):
            g = groups[name]
            p95 = _pcts(g[14], g[4], g[5], None if exact is None else exact.get(prefix + name, []))["p95"]
            out[name] = {"calls": g[0], "failed": g[1], "cost_usd": g[12], "total_tokens": g[11],
                         "p95_ms": p95}
        return out

    calls, failed = total[0], total[1]
    lat: dict[str, Any] = {"count": total[2]}
    lat.update(_pcts(total[14], total[4], total[5], None if exact is None else exact[""]))
    lat.update(min=total[4], max=total[5], mean=(total[3] / total[2]) if total[2] else None,
               exact=exact is not None, max_relative_error=0.0 if exact is not None else ru.ALPHA)
    by_agent = per(agents, "a:")
    named = [(v["calls"], n) for n, v in by_agent.items() if n != NONE]
    top = min(named, key=lambda t: (-t[0], t[1])) if named else None  # most calls, then by name
    return {
        "calls": {"total": calls, "succeeded": calls - failed, "failed": failed,
                  "success_rate": (calls - failed) / calls if calls else None,
                  "by_kind": {k: {"calls": g[0], "failed": g[1]} for k, g in sorted(kinds.items())}},
        "latency_ms": lat,
        "cost_usd": {"total": total[12], "priced_calls": total[13],
                     "unpriced_model_calls": sum(g[0] - g[13] for n, g in models.items() if n != NONE)},
        "tokens": dict(zip(_TOKENS, total[6:12], strict=True)),
        "by_model": per(models, "m:"),
        "by_agent": by_agent,
        "top_agent": {"agent": top[1], "calls": top[0]} if top else None,
        "failed_calls": {"total": failed,
                         "by_error_type": dict(sorted(etypes.items(), key=lambda t: (-t[1], t[0])))},
    }


def listing(conn: apsw.Connection, bucket_ns: int, since: int, until: int, flt: dict[str, str],
            rollups_ok: bool) -> list[dict[str, Any]]:
    """Whole buckets overlapping [since, until) per category/component/service: count, errors, p95."""
    aggs: Aggs = {}
    fetch_all(conn, _listing_jobs(bucket_ns, since, until, flt, rollups_ok, aggs))
    return _listing_items(aggs)


def _listing_jobs(bucket_ns: int, since: int, until: int, flt: dict[str, str], rollups_ok: bool,
                  aggs: Aggs) -> list[Job]:
    table = "rollup_hourly" if bucket_ns == ru.HOUR_NS else "rollup_daily"
    a = since // bucket_ns * bucket_ns
    b = -(-until // bucket_ns) * bucket_ns
    if rollups_ok:
        return _rollup_jobs(table, a, b, flt, False, aggs, ("category", "component", "service"), keep_bucket=True,
                            lean=True)
    return _raw_jobs(a, b, flt, False, aggs, bucket_ns)


def _listing_items(aggs: Aggs) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for key, acc in aggs.items():  # rollup rows come grouped already; raw ones are regrouped here
        g = groups.get(key[:4])
        if g is None:
            groups[key[:4]] = acc
        else:
            ru.merge_agg(g, acc)
    return [{"bucket_start": iso_ns(k[0]), "bucket_start_ns": k[0], "category": k[1],
             "component": k[2] or None, "service": k[3] or None, "count": g[0], "errors": g[1],
             "p95_ms": ru.hist_percentile(g[14], 95, g[4], g[5])} for k, g in sorted(groups.items())]


def _alerts(path: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"state_file": None, "firing": [], "rules": [], "error": None}
    if not path or not os.path.isfile(path):
        return out
    from ..store.alert_state import list_alerts

    out["state_file"] = path
    try:
        out["firing"] = list_alerts(path, "firing", 100)
        out["rules"] = list_alerts(path, "rules", 100)  # the default AI rules among them
    except apsw.Error as exc:
        out["error"] = str(exc)
    return out


def report(conn: apsw.Connection, since_ns: int, until_ns: int | None = None, *, agent: str | None = None,
           model: str | None = None, category: str | None = None, alerts_path: str | None = None,
           period: str | None = None, now_ns: int | None = None, include_rollups: bool = True,
           source: str = "auto", instance: str | None = None, extra: Sequence[Job] = ()) -> dict[str, Any]:
    """The agent/dev metrics report over ``[since_ns, until_ns)`` (until default: now).

    ``source="raw"`` forces the exact raw-row path for the call figures (slow on long windows).
    ``instance`` (a central server's view: one collector's rows) filters the rollups like the other
    filters (their key holds the instance; a store not yet upgraded is read from raw rows). ``extra``: the
    caller's own queries, sent with the report's (the dashboard's AI panel: one round trip).
    """
    if source not in ("auto", "raw"):
        raise QueryError(f"source must be auto or raw, not {source!r}")
    for name, value in (("agent", agent), ("model", model), ("category", category), ("instance", instance)):
        if value is not None and not value.strip():
            raise QueryError(f"--{name} must not be empty")
    until = (time.time_ns() if now_ns is None else now_ns) if until_ns is None else until_ns
    if since_ns >= until:
        raise QueryError("the window is empty: since must be before until")
    flt = {k: v for k, v in (("agent", agent), ("model", model), ("category", category), ("instance", instance))
           if v is not None}
    # A GenAI call is one whatever its category: a failed one is filed under error_patterns, so
    # "the calls of ai_behavior" must not lose it (the rollup listings keep the plain filter).
    call_flt = {k: v for k, v in flt.items() if not (k == "category" and v == "ai_behavior")}
    rollups_ok = has_rollups(conn) and (instance is None or rollups_by_instance(conn))
    aggs: Aggs = {}
    durations: list[tuple[tuple[Any, ...], float]] | None = None
    jobs: list[Job] = []  # every query of the report, sent together (one round trip to a server)
    if source == "auto" and rollups_ok and until - since_ns >= SHORT_WINDOW_NS:
        source = "rollups"
        raw, hourly, daily = decompose(since_ns, until)
        for a, b in raw:
            jobs += _raw_jobs(a, b, call_flt, True, aggs, None)
        for table, ranges in (("rollup_hourly", hourly), ("rollup_daily", daily)):
            for a, b in ranges:
                jobs += _rollup_jobs(table, a, b, call_flt, True, aggs, _CALL_GROUP, keep_bucket=False)
    else:
        source, durations = "raw", []
        jobs += _raw_jobs(since_ns, until, call_flt, True, aggs, None, durations)
    lists: dict[str, Aggs] = {"hourly": {}, "daily": {}}
    if include_rollups:
        jobs += _listing_jobs(ru.HOUR_NS, max(since_ns, until - LISTING_HOURS_NS), until, flt, rollups_ok,
                              lists["hourly"])
        jobs += _listing_jobs(ru.DAY_NS, since_ns, until, flt, rollups_ok, lists["daily"])
    fetch_all(conn, [*jobs, *extra])
    out: dict[str, Any] = {
        "since": iso_ns(since_ns), "until": iso_ns(until), "since_ns": since_ns, "until_ns": until,
        "period": period, "filters": {"agent": agent, "model": model, "category": category},
        "source": source,
    }
    if instance is not None:
        out["filters"]["instance"] = instance
    out.update(summarise(aggs, durations))
    out["alerts"] = _alerts(alerts_path)
    out["rollups"] = {name: _listing_items(a) if include_rollups else [] for name, a in lists.items()}
    return out
