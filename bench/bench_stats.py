"""Stats/rollup query latency at 1M stored records (issue 4).

Builds a database of ``--records`` rows spread evenly over the 30 days before now, written through
the real ``StoreWriter`` (so the writer maintains the rollups in its transactions, as in the
collector), then times ``ai_stats.report`` (the ``stats --period`` report, rollup tables included)
for 1-day, 7-day and 30-day windows ``--runs`` times each on a read-only connection, and the
exact raw-row path and the older ``query.stats`` for the 1-day window as references. The
database lives in a temporary directory under /tmp and is deleted at the end.

    .venv/bin/python bench/bench_stats.py --records 1000000 --runs 30 [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import apsw
import orjson

from otel_telemetry.query import ai_stats
from otel_telemetry.query import filters as query
from otel_telemetry.store import rollups, schema
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 1_000_000_000
DAY = 86400 * NS
AGENTS = ("planner", "coder", "reviewer", "researcher", "orchestrator", "summariser")
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-pro")
ERRORS = ("TimeoutError", "openai.RateLimitError", "ValueError", "httpx.ConnectError")
SERVICES = ("api", "worker", "web", "agent-runtime")
ROUTES = ("/users", "/orders", "/search", "/health", "/items", "/login")


def make_row(i: int, ts: int, rnd: random.Random) -> tuple[Any, ...]:
    v: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
    v.update(uid=rnd.randbytes(16), timestamp=ts, level="info", metadata='{"resource":{"service.name":"x"}}')
    u = rnd.random()
    if u < 0.4:  # GenAI call
        kind = "model_call" if rnd.random() < 0.7 else "tool_call"
        failed = rnd.random() < 0.08
        attrs: dict[str, Any] = {"telemetry.event": kind, "gen_ai.agent.name": rnd.choice(AGENTS),
                                 "gen_ai.operation.name": "chat" if kind == "model_call" else "execute_tool",
                                 "code.function.name": "generate", "session.id": f"s{rnd.randrange(500)}"}
        if failed:
            attrs["error.type"] = rnd.choice(ERRORS)
        v.update(type="span", category="ai_behavior", subcategory="chat", component="llm", event=kind,
                 name="generate", service="agent-runtime", kind="client", agent=attrs["gen_ai.agent.name"],
                 duration_ms=rnd.lognormvariate(6.5, 0.8), status="error" if failed else "ok",
                 level="error" if failed else "info", trace_id=rnd.randbytes(16).hex(), span_id=rnd.randbytes(8).hex())
        if kind == "model_call":
            inp, out = rnd.randrange(200, 8000), rnd.randrange(20, 1500)
            v.update(model=rnd.choice(MODELS), provider="openai", input_tokens=inp, output_tokens=out,
                     cache_read_tokens=rnd.randrange(0, inp // 2), cache_write_tokens=0,
                     reasoning_tokens=rnd.randrange(0, out // 3), total_tokens=inp + out,
                     cost_usd=(inp * 2.5 + out * 10) / 1e6)
            attrs.update({"gen_ai.request.model": v["model"], "gen_ai.usage.input_tokens": inp,
                          "gen_ai.usage.output_tokens": out})
        v["data"] = orjson.dumps({"attributes": attrs}).decode()
    elif u < 0.75:  # ordinary spans
        route = rnd.choice(ROUTES)
        failed = rnd.random() < 0.03
        v.update(type="span", category=rnd.choice(("user_interaction", "component_interactions")),
                 component=rnd.choice(("http", "db", "cache")), event=f"GET {route}", name=f"GET {route}",
                 service=rnd.choice(SERVICES), kind="server", duration_ms=rnd.lognormvariate(3, 1.2),
                 status="error" if failed else "unset", level="error" if failed else "info",
                 trace_id=rnd.randbytes(16).hex(), span_id=rnd.randbytes(8).hex(),
                 data=orjson.dumps({"attributes": {"http.route": route, "http.request.method": "GET",
                                                   "http.response.status_code": 500 if failed else 200,
                                                   "url.path": route, "server.address": "localhost"}}).decode())
    elif u < 0.9:  # logs
        lvl = rnd.choice(("info", "info", "info", "warning", "error"))
        v.update(type="log", category="component_interactions", component="log", event="log", level=lvl,
                 service=rnd.choice(SERVICES),
                 data=orjson.dumps({"body": f"request {i} done", "attributes": {}}).decode())
    else:  # metrics
        name = rnd.choice(("system.cpu.utilization", "system.memory.utilization", "process.runtime.gc"))
        v.update(type="metric", category="system_performance", component="host", event=name, name=name,
                 service=rnd.choice(SERVICES), metric_type="gauge", metric_value=rnd.random(),
                 data=orjson.dumps({"attributes": {"host.name": "bench"}}).decode())
    return tuple(v[c] for c in schema.COLUMNS)


def build(path: str, n: int, now: int, batch: int) -> dict[str, float]:
    rnd = random.Random(42)
    span = 30 * DAY
    w = StoreWriter(path, batch_rows=batch, flush_interval=0.05, queue_batches=4, checkpoint_interval=2.0)
    w.start()
    t0 = time.perf_counter()
    gen = 0.0
    for k in range(0, n, batch):
        g = time.perf_counter()
        rows = [make_row(i, now - span + (i * span) // n + rnd.randrange(1000), rnd)
                for i in range(k, min(n, k + batch))]
        gen += time.perf_counter() - g
        if not w.submit(WriteBatch(rows), 120):
            raise RuntimeError("writer queue full for 120 s")
    assert w.flush(600)
    total = time.perf_counter() - t0
    s = w.stats()
    assert w.shutdown(120)
    if s["stored"] != n or s["errors"]:
        raise RuntimeError(f"build failed: {s}")
    return {"build_s": total, "generate_s": gen, "write_rows_per_s": n / max(total - gen, 1e-9)}


def rollup_cpu(n: int, now: int) -> float:
    """µs per row of the writer's rollup aggregation alone (pure CPU, no SQL)."""
    rnd = random.Random(7)
    rows = [make_row(i, now - rnd.randrange(DAY), rnd) + (None,) for i in range(n)]  # + instance
    t = time.perf_counter()
    rollups.aggregate_rows(rows, rollups.HOUR_NS)
    return (time.perf_counter() - t) / n * 1e6


def ingest_overhead(tmp: str, n: int, now: int, batch: int) -> dict[str, float]:
    """Writer-side cost of rollups: the store's insert transaction with and without
    ``rollups.update`` on fresh databases (same rows, same code as ``StoreWriter._write``)."""
    from otel_telemetry.store import retention
    from otel_telemetry.store import writer as store

    rnd = random.Random(9)
    rows = [make_row(i, now - DAY + (i * DAY) // n, rnd) for i in range(n)]
    out = {}
    for label, with_rollups in (("without", False), ("with", True), ("without_2", False), ("with_2", True)):
        conn = store.open_writer(os.path.join(tmp, f"ingest_{label}.db"))
        t = time.perf_counter()
        for k in range(0, n, batch):
            chunk = rows[k:k + batch]
            with retention.transaction(conn):
                conn.executemany(store._INSERT, [r + (None,) for r in chunk])  # + the instance column
                if with_rollups:
                    rollups.update(conn, chunk, (None,))
        out[label] = n / (time.perf_counter() - t)
        conn.close()
    return {"rows_per_s_without": max(out["without"], out["without_2"]),
            "rows_per_s_with": max(out["with"], out["with_2"])}


def timed_ms(fn: Any, runs: int) -> dict[str, float]:
    fn()  # warm the page cache / statement cache once
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {"p50_ms": statistics.median(ms), "p95_ms": ms[max(-(-95 * len(ms) // 100), 1) - 1], "max_ms": ms[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_stats_", dir="/tmp")
    path = os.path.join(tmp, "stats.db")
    now = time.time_ns()
    out: dict[str, Any] = {"records": args.records, "runs": args.runs}
    try:
        out["build"] = build(path, args.records, now, args.batch)
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        out["db_mb"] = os.path.getsize(path) / 1e6
        out["rollup_rows"] = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in rollups.TABLES}
        out["rollup_cpu_us_per_row"] = rollup_cpu(100_000, now)
        out["ingest"] = ingest_overhead(tmp, 200_000, now, args.batch)
        res: dict[str, Any] = {}
        for label, days in (("1d", 1), ("7d", 7), ("30d", 30)):
            res[f"report {label}"] = timed_ms(lambda d=days: ai_stats.report(conn, now - d * DAY, now), args.runs)
        res["report 1d, no rollup tables"] = timed_ms(
            lambda: ai_stats.report(conn, now - DAY, now, include_rollups=False), args.runs)
        res["report 1d, raw rows (exact)"] = timed_ms(
            lambda: ai_stats.report(conn, now - DAY, now, source="raw", include_rollups=False), max(5, args.runs // 3))
        res["query.stats 1d (old stats)"] = timed_ms(lambda: query.stats(conn, now - DAY, now), max(5, args.runs // 3))
        out["latency"] = res
        acc = {}
        for days in (1, 7, 30):
            a = ai_stats.report(conn, now - days * DAY, now, include_rollups=False)
            b = ai_stats.report(conn, now - days * DAY, now, source="raw", include_rollups=False)
            assert a["calls"] == b["calls"] and a["tokens"] == b["tokens"], "rollup counts differ from raw"
            acc[f"{days}d"] = {p: abs(a["latency_ms"][p] / b["latency_ms"][p] - 1) for p in ("p50", "p95", "p99")}
            acc[f"{days}d"]["calls"] = a["calls"]["total"]
            acc[f"{days}d"]["cost_rel_diff"] = abs(a["cost_usd"]["total"] / b["cost_usd"]["total"] - 1)
        out["accuracy_vs_raw"] = acc
        conn.close()
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "otel_telemetry", "stats", "--period", "1d", "--db", path,
                        "--format", "json"], check=True, stdout=subprocess.DEVNULL)
        out["cli_1d_wall_s"] = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
