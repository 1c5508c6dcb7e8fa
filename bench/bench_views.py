"""Component map, services and metrics explorer at 1M stored records (issue 16), and what keeping the
call edges costs the writer.

Builds ``--records`` rows over the 30 days before now through the real ``StoreWriter`` (rollups and
call edges maintained in its transactions, as in the collector): traces that walk a 14-service
topology (gateway -> APIs -> stores, queues -> workers) with lognormal durations, 2-6 % errors,
varying routes and ids; their spans are delivered children-first and up to ``--spread`` rows late,
so many parents arrive in a later batch than their children (the edge_waiting path); plus logs and
metric points (gauges, a cumulative counter and an explicit-bucket histogram per service). Then
times, on a read-only connection, ``map`` (service and component) for 1 and 30 days, ``services``
for 1 and 30 days and ``metrics`` (histogram p95 by service) for 1 day; and the writer's insert
transaction with rollups alone vs rollups + edges on fresh files (the same rows: these traces, and
bench_stats' single-span rows). Targets: map 1 day <= 200 ms, 30 days <= 500 ms. The database
lives under /tmp and is deleted at the end.

    .venv/bin/python bench/bench_views.py --records 1000000 --runs 20 [--ingest-only] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any

import apsw
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import make_row, timed_ms  # noqa: E402 - the shared timing helper and issue 4's rows

from otel_telemetry.query import metrics, service_map  # noqa: E402
from otel_telemetry.store import edges, rollups, schema  # noqa: E402
from otel_telemetry.store.writer import StoreWriter, WriteBatch  # noqa: E402

NS = 1_000_000_000
DAY = 86400 * NS
# caller -> callees (kind of the call): a small shop's topology.
CALLS: dict[str, list[tuple[str, str]]] = {
    "gateway": [("users", "http"), ("orders", "http"), ("search", "http"), ("recommend", "http")],
    "users": [("users-db", "db"), ("cache", "db")],
    "orders": [("orders-db", "db"), ("payments", "http"), ("events", "queue")],
    "payments": [("payments-db", "db"), ("fraud", "http")],
    "search": [("index", "http"), ("cache", "db")],
    "recommend": [("llm", "http"), ("index", "http")],
    "events": [("mailer", "queue"), ("analytics", "queue")],
}
ROUTES = ("/users/{id}", "/orders", "/orders/{id}", "/search", "/cart", "/checkout", "/recommend")
BOUNDS = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0]


def _row(v: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(v.get(c) for c in schema.COLUMNS)


def _span(rnd: random.Random, trace: str, parent: str | None, service: str, ts: int, kind: str, name: str,
          dur: float, err_p: float) -> tuple[str, tuple[Any, ...]]:
    sid = rnd.randbytes(8).hex()
    failed = rnd.random() < err_p
    cat = {"server": "user_interaction", "consumer": "component_interactions"}.get(kind, "component_interactions")
    attrs = {"http.route": name, "request.id": rnd.randbytes(6).hex(), "user.id": f"u{rnd.randrange(5000)}"}
    return sid, _row(dict(
        uid=rnd.randbytes(16), timestamp=ts, type="span", category=cat, component=f"{service}.{kind}", event=name,
        level="error" if failed else "info", name=name, service=service, trace_id=trace, span_id=sid,
        parent_span_id=parent, kind=kind, duration_ms=dur, status="error" if failed else "unset",
        data=orjson.dumps({"attributes": attrs}).decode(), metadata='{"resource":{}}'))


def trace_rows(rnd: random.Random, ts: int) -> list[tuple[Any, ...]]:
    """One request's spans: a walk down the topology from the gateway, children listed first."""
    trace = rnd.randbytes(16).hex()
    out: list[tuple[Any, ...]] = []

    def serve(service: str, parent: str | None, t: int, kind: str, depth: int) -> None:
        route = rnd.choice(ROUTES)
        dur = rnd.lognormvariate(3.2 - depth * 0.4, 0.9)
        sid, row = _span(rnd, trace, parent, service, t, kind, f"{'GET' if kind == 'server' else 'handle'} {route}",
                         dur, 0.02 + 0.01 * depth)
        for callee, how in CALLS.get(service, ()):
            if rnd.random() < 0.55:
                ck = {"http": "client", "db": "client", "queue": "producer"}[how]
                cid, crow = _span(rnd, trace, sid, service, t + 1000, ck, f"call {callee}", dur * 0.6, 0.0)
                if how == "db":
                    out.append(_span(rnd, trace, cid, callee, t + 2000, "server", "query", dur * 0.3, 0.01)[1])
                else:
                    serve(callee, cid, t + 2000, "consumer" if how == "queue" else "server", depth + 1)
                out.append(crow)
        out.append(row)

    serve("gateway", None, ts, "server", 0)
    return out


def other_rows(rnd: random.Random, ts: int, i: int) -> list[tuple[Any, ...]]:
    svc = rnd.choice(list(CALLS))
    if rnd.random() < 0.5:
        return [_row(dict(uid=rnd.randbytes(16), timestamp=ts, type="log", category="component_interactions",
                          component="log", event="log", level=rnd.choice(("info", "info", "warning", "error")),
                          service=svc, data=orjson.dumps({"body": f"request {i} done", "attributes": {}}).decode(),
                          metadata="{}"))]
    counts = [rnd.randrange(0, 50) for _ in range(len(BOUNDS) + 1)]
    n = sum(counts)
    return [
        _row(dict(uid=rnd.randbytes(16), timestamp=ts, type="metric", category="system_performance", component="host",
                  event="queue.depth", name="queue.depth", level="info", service=svc, metric_type="gauge",
                  metric_value=rnd.random() * 100, data=orjson.dumps({"attributes": {"host": svc}}).decode(),
                  metadata="{}")),
        _row(dict(uid=rnd.randbytes(16), timestamp=ts, type="metric", category="user_interaction", component="http",
                  event="http.server.duration", name="http.server.duration", level="info", service=svc,
                  metric_type="histogram", metric_value=float(n), metadata="{}",
                  data=orjson.dumps({"attributes": {"route": rnd.choice(ROUTES)}, "temporality": "delta",
                                     "bounds": BOUNDS, "counts": counts, "count": n, "sum": 40.0 * n}).decode())),
    ]


def generate(n: int, now: int, spread: int, seed: int = 42, days: int = 30) -> list[tuple[Any, ...]]:
    """``n`` rows over the ``days`` days before ``now``, each delivered up to ``spread`` rows late."""
    rnd = random.Random(seed)
    span = days * DAY
    keyed: list[tuple[float, tuple[Any, ...]]] = []
    while len(keyed) < n:
        pos = len(keyed)
        ts = now - span + (pos * span) // n + rnd.randrange(10**9)
        rows = trace_rows(rnd, ts) if rnd.random() < 0.85 else other_rows(rnd, ts, pos)
        keyed += [(pos + k + rnd.random() * spread, r) for k, r in enumerate(rows)]
    keyed.sort(key=lambda x: x[0])
    return [r for _, r in keyed[:n]]


def build(path: str, rows: list[tuple[Any, ...]], batch: int) -> dict[str, Any]:
    w = StoreWriter(path, batch_rows=batch, flush_interval=0.05, queue_batches=4, checkpoint_interval=2.0,
                    instance="bench")
    w.start()
    t0 = time.perf_counter()
    for k in range(0, len(rows), batch):
        if not w.submit(WriteBatch(rows[k:k + batch]), 120):
            raise RuntimeError("writer queue full for 120 s")
    assert w.flush(900)
    total = time.perf_counter() - t0
    s = w.stats()
    assert w.shutdown(120)
    if s["stored"] != len(rows) or s["errors"]:
        raise RuntimeError(f"build failed: {s}")
    return {"build_s": round(total, 1), "rows_per_s": round(len(rows) / total), "evicted": s["edge_children_evicted"]}


def ingest_cost(tmp: str, rows: list[tuple[Any, ...]], batch: int) -> dict[str, float]:
    """The writer's transaction (insert + rollups) with and without ``edges.update``, fresh files,
    the same rows; best of two runs each, interleaved."""
    from otel_telemetry.store import retention
    from otel_telemetry.store import writer as store

    out: dict[str, list[float]] = {"without": [], "with": []}
    for run, with_edges in enumerate((False, True, False, True)):
        conn = store.open_writer(os.path.join(tmp, f"ingest_{run}.db"))
        t = time.perf_counter()
        for k in range(0, len(rows), batch):
            chunk = rows[k:k + batch]
            with retention.transaction(conn):
                conn.executemany(store._INSERT, [r + ("bench",) for r in chunk])
                rollups.update(conn, chunk, ("bench",))
                if with_edges:
                    edges.update(conn, chunk)
        out["with" if with_edges else "without"].append(len(rows) / (time.perf_counter() - t))
        conn.close()
    a, b = max(out["without"]), max(out["with"])
    return {"rows_per_s_without_edges": round(a), "rows_per_s_with_edges": round(b), "cost_ratio": round(a / b, 3)}


def views(tmp: str, now: int, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Build the 1M-record database and time the read side on it."""
    t = time.perf_counter()
    rows = generate(args.records, now, args.spread)
    out["generate_s"] = round(time.perf_counter() - t, 1)
    path = os.path.join(tmp, "views.db")
    out["build"] = build(path, rows, args.batch)
    del rows
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    out["edge_rows"] = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                        for t in (*edges.TABLES, "edge_waiting")}
    timings = {}
    for label, days in (("1d", 1), ("30d", 30)):
        since = now - days * DAY
        for by in ("service", "component"):
            timings[f"map --by {by} --last {label}"] = timed_ms(
                lambda s=since, b=by: service_map.service_map(conn, s, now, b), args.runs)
        timings[f"services --last {label}"] = timed_ms(
            lambda s=since: service_map.services(conn, s, now), args.runs)
    timings["metrics http.server.duration --agg p95 --group-by service --last 1d"] = timed_ms(
        lambda: metrics.series(conn, "http.server.duration", now - DAY, now, "p95", "service"),
        max(3, args.runs // 4))
    # Baseline, side by side: the series key without the instance and resource identity (what the
    # query read before two devices' counters were told apart): what that reading costs.
    keyed = metrics._POINTS_SQL
    metrics._POINTS_SQL = keyed.replace(metrics.histograms.SERIES_SQL, "service")
    try:
        timings["  baseline: the same without instance/resource in the series key"] = timed_ms(
            lambda: metrics.series(conn, "http.server.duration", now - DAY, now, "p95", "service"),
            max(3, args.runs // 4))
    finally:
        metrics._POINTS_SQL = keyed
    timings["metrics http.server.duration --agg p95 --instance bench --last 1d"] = timed_ms(
        lambda: metrics.series(conn, "http.server.duration", now - DAY, now, "p95", None, "bench"),
        max(3, args.runs // 4))
    timings["map --by service --instance bench --last 1d (raw spans)"] = timed_ms(
        lambda: service_map.service_map(conn, now - DAY, now, "service", None, "bench"), max(3, args.runs // 4))
    timings["map --by service --instance bench --last 30d (raw spans)"] = timed_ms(
        lambda: service_map.service_map(conn, now - 30 * DAY, now, "service", None, "bench"), 3)
    m = service_map.service_map(conn, now - 30 * DAY, now)
    out["map_30d"] = {"nodes": len(m["nodes"]), "edges": len(m["edges"])}
    conn.close()
    out["timings_ms"] = timings
    print(f"records {args.records:,}  build {out['build']}  edge rows {out['edge_rows']}  map 30d {out['map_30d']}")
    print(f"{'query':<70} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, t in timings.items():
        print(f"{name:<70} {t['p50_ms']:8.1f} {t['p95_ms']:8.1f} {t['max_ms']:8.1f}")
    ok1 = timings["map --by service --last 1d"]["p95_ms"] <= 200
    ok30 = timings["map --by service --last 30d"]["p95_ms"] <= 500
    print(f"targets: map 1d p95 <= 200 ms {'PASS' if ok1 else 'FAIL'}; "
          f"map 30d p95 <= 500 ms {'PASS' if ok30 else 'FAIL'}")


def ingest(tmp: str, now: int, args: argparse.Namespace, out: dict[str, Any]) -> None:
    # As in bench_stats: a day's traffic, so batches hit the hour buckets a live collector hits.
    out["ingest"] = ingest_cost(tmp, generate(args.ingest_rows, now, args.spread, seed=7, days=1), args.batch)
    # bench_stats' rows (issue 4): single-span traces, as GenAI calls and plain HTTP spans often are.
    rnd = random.Random(9)
    flat = [make_row(i, now - DAY + (i * DAY) // args.ingest_rows, rnd) for i in range(args.ingest_rows)]
    out["ingest_flat"] = ingest_cost(tmp, flat, args.batch)
    for label, key in (("multi-service traces", "ingest"), ("bench_stats rows", "ingest_flat")):
        g = out[key]
        print(f"writer insert+rollups, {label}: {g['rows_per_s_without_edges']:,} rows/s without edges, "
              f"{g['rows_per_s_with_edges']:,} with: edges cost x{g['cost_ratio']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--spread", type=int, default=3000, help="rows a span may be delivered late")
    ap.add_argument("--ingest-rows", type=int, default=200_000)
    ap.add_argument("--ingest-only", action="store_true", help="only the writer cost, no database build")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_views_", dir="/tmp")
    now = time.time_ns()
    out: dict[str, Any] = {"records": args.records, "runs": args.runs}
    try:
        if not args.ingest_only:
            views(tmp, now, args, out)
        ingest(tmp, now, args, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            f.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
