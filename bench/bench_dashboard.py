"""Dashboard API latency per panel at 1M stored records (issue 6).

Builds the same database as ``bench_stats.py`` (``--records`` rows over the 30 days before now,
written through the real ``StoreWriter`` so the rollups are maintained as in the collector), starts
the real dashboard server on 127.0.0.1 (ephemeral port), and times every panel's API request over
HTTP (one keep-alive connection, bearer token, full response read and JSON-parsed) ``--runs`` times
after one warm-up. Prints a table of p50/p95/max per request and the target check (p95 ≤ 100 ms).
The database lives in a temporary directory under /tmp and is deleted at the end.

    .venv/bin/python bench/bench_dashboard.py --records 1000000 --runs 30 [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import apsw
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import build, timed_ms  # noqa: E402 - the shared 1M-record seeding and timing

from otel_telemetry.dashboard.server import Dashboard  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
TARGET_MS = 100.0


def requests(trace_id: str, agent: str) -> list[tuple[str, str]]:
    """(panel, path) of every panel request the pages make, at their default and longer windows."""
    return [
        ("overview", "/api/overview?last=24h"), ("overview", "/api/overview?last=7d"),
        ("overview", "/api/overview?last=30d"),
        ("overview: system metrics", "/api/system?last=24h"), ("overview: system metrics", "/api/system?last=7d"),
        ("AI", "/api/ai?last=1h"), ("AI", "/api/ai?last=24h"), ("AI", "/api/ai?last=7d"), ("AI", "/api/ai?last=30d"),
        ("AI", f"/api/ai?last=7d&agent={agent}"),
        ("errors", "/api/errors?last=24h"), ("errors", "/api/errors?last=7d"), ("errors", "/api/errors?last=30d"),
        ("traces: search", "/api/traces?last=24h"), ("traces: search", "/api/traces?last=7d&category=ai_behavior"),
        ("traces: search", "/api/traces?last=24h&service=api&status=error"),
        ("traces: search", "/api/traces?last=24h&min_duration_ms=2000"),
        ("traces: waterfall", f"/api/trace?trace_id={trace_id}"),
        ("sessions", "/api/sessions?last=24h"), ("sessions", "/api/session?session_id=s42"),
        ("alerts", "/api/alerts"), ("retention", "/api/retention"),
    ]


def timed(conn: http.client.HTTPConnection, host: str, path: str, runs: int) -> dict[str, float]:
    headers = {"Host": host, "Authorization": f"Bearer {TOKEN}"}

    def one() -> None:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        orjson.loads(body)

    return timed_ms(one, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_dashboard_", dir="/tmp")
    path = os.path.join(tmp, "dash.db")
    now = time.time_ns()
    out: dict[str, Any] = {"records": args.records, "runs": args.runs}
    try:
        out["build"] = build(path, args.records, now, args.batch)
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        trace_id, agent = conn.execute("SELECT trace_id, agent FROM records WHERE agent IS NOT NULL "
                                       "ORDER BY id DESC LIMIT 1").fetchone()
        conn.close()
        out["db_mb"] = os.path.getsize(path) / 1e6
        dash = Dashboard(path, TOKEN, "127.0.0.1", 0)
        dash.start()
        try:
            host = f"127.0.0.1:{dash.port}"
            http_conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=60)
            res = []
            for panel, req in requests(trace_id, agent):
                r = timed(http_conn, host, req, args.runs)
                res.append({"panel": panel, "request": req, **r})
            http_conn.close()
        finally:
            dash.shutdown()
        out["latency"] = res
        out["worst_p95_ms"] = max(r["p95_ms"] for r in res)
        out["target_met"] = out["worst_p95_ms"] <= TARGET_MS
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'panel':<26} {'request':<52} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for r in out["latency"]:
        print(f"{r['panel']:<26} {r['request']:<52} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['max_ms']:8.1f}")
    print(f"worst p95 {out['worst_p95_ms']:.1f} ms; target p95 <= {TARGET_MS:.0f} ms: "
          f"{'met' if out['target_met'] else 'NOT met'}; build {out['build']['build_s']:.1f} s, {out['db_mb']:.0f} MB")
    if args.json:
        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
