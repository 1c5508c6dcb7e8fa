"""Attribute search and compare at 1M stored records (issue 16 items 4 and 6).

Builds ``--records`` rows over the 30 days before now through the real ``StoreWriter`` (the
stats benchmark's realistic rows: GenAI calls, HTTP/DB spans with varying routes and status
codes, logs, metrics), each span with a few more varying attributes: ``region`` (planted on
90 % of the failures and 10 % of the other spans), ``customer.tier``, ``cart.items`` and a unique
``request.id``. Then times, on a read-only connection, ``--runs`` times each after a warm-up:

* attribute search as the dashboard's trace search and ``query --type span --attr`` run it (the
  newest 50 matching spans of a 1-day window): a common value, a rare one, a value no span has
  (the whole window is read), a numeric comparison, ``!=``, and two filters together;
* ``compare --where error`` and ``--where duration>1000ms`` over 1, 7 and 30 days (sampled
  beyond ``compare_max_spans``, 10 000) and for one operation.

The database lives in a temporary directory under /tmp and is deleted at the end.

    .venv/bin/python bench/bench_explore.py --records 1000000 --runs 10 [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
import orjson

sys.path.insert(0, str(Path(__file__).parent))
import bench_stats  # noqa: E402 - the sibling benchmark's realistic rows and timing

from otel_telemetry.query import attr_search  # noqa: E402
from otel_telemetry.query import compare as qc  # noqa: E402
from otel_telemetry.query.filters import Filters, query_records  # noqa: E402
from otel_telemetry.store import schema  # noqa: E402
from otel_telemetry.store.writer import StoreWriter, WriteBatch  # noqa: E402

NS = 1_000_000_000
DAY = 86400 * NS
_DATA = schema.COLUMNS.index("data")
_STATUS = schema.COLUMNS.index("status")
_TYPE = schema.COLUMNS.index("type")
REGIONS = ("us-east", "us-west", "ap-south", "eu-central", "sa-east")


def make_row(i: int, ts: int, rnd: random.Random) -> tuple[Any, ...]:
    row = list(bench_stats.make_row(i, ts, rnd))
    if row[_TYPE] == "span":
        data = orjson.loads(row[_DATA])
        failed = row[_STATUS] == "error"
        eu = rnd.random() < (0.9 if failed else 0.1)
        data["attributes"].update({"region": "eu-west" if eu else rnd.choice(REGIONS),
                                   "customer.tier": rnd.choice(("gold", "silver", "bronze")),
                                   "cart.items": rnd.randrange(12), "request.id": f"req-{i:08d}"})
        row[_DATA] = orjson.dumps(data).decode()
    return tuple(row)


def build(path: str, n: int, now: int, batch: int) -> float:
    rnd = random.Random(42)
    span = 30 * DAY
    w = StoreWriter(path, batch_rows=batch, flush_interval=0.05, queue_batches=4, checkpoint_interval=2.0)
    w.start()
    t0 = time.perf_counter()
    for k in range(0, n, batch):
        rows = [make_row(i, now - span + (i * span) // n + rnd.randrange(1000), rnd)
                for i in range(k, min(n, k + batch))]
        if not w.submit(WriteBatch(rows), 120):
            raise RuntimeError("writer queue full for 120 s")
    assert w.flush(600)
    s = w.stats()
    assert w.shutdown(120)
    if s["stored"] != n or s["errors"]:
        raise RuntimeError(f"build failed: {s}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_explore_", dir="/tmp")
    path = os.path.join(tmp, "explore.db")
    now = time.time_ns()
    out: dict[str, Any] = {"records": args.records, "runs": args.runs, "python": platform.python_version(),
                           "apsw": apsw.apsw_version(), "nproc": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    try:
        out["build_s"] = build(path, args.records, now, args.batch)
        out["db_mb"] = os.path.getsize(path) / 1e6
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        day = (now - DAY, now)
        out["spans_1d"] = conn.execute("SELECT count(*) FROM records WHERE type = 'span' AND timestamp >= ? "
                                       "AND timestamp < ?", day).fetchone()[0]
        search: dict[str, Any] = {}
        for label, specs in (
            ("http.route=/orders (common)", ["http.route=/orders"]),
            ("gen_ai.agent.name=planner", ["gen_ai.agent.name=planner"]),
            ("region=eu-west (10 %)", ["region=eu-west"]),
            ("request.id=<one span>", [f"request.id=req-{args.records // 2:08d}"]),
            ("region=nowhere (no match: whole day read)", ["region=nowhere"]),
            ("http.response.status_code>=500", ["http.response.status_code>=500"]),
            ("customer.tier!=gold", ["customer.tier!=gold"]),
            ("region=eu-west + cart.items>9", ["region=eu-west", "cart.items>9"]),
            ("service.name=x (resource) + name=GET /orders", ["service.name=x", "name=GET /orders"]),
        ):
            flt = Filters(type="span", since_ns=day[0], until_ns=day[1], limit=50, attrs=attr_search.parse_all(specs))
            found = len(query_records(conn, flt))
            search[label] = {**bench_stats.timed_ms(lambda f=flt: query_records(conn, f), args.runs), "found": found}
        out["attr_search_1d"] = search
        cmp: dict[str, Any] = {}
        for label, where, days, name in (
            ("error, 1 d", "error", 1, None), ("error, 7 d", "error", 7, None), ("error, 30 d", "error", 30, None),
            ("duration>1000ms, 1 d", "duration>1000ms", 1, None),
            ("duration>1000ms, 30 d", "duration>1000ms", 30, None),
            ("error, 30 d, name=GET /orders", "error", 30, "GET /orders"),
        ):
            w = qc.parse_where(where)
            r = qc.compare(conn, w, now - days * DAY, now, name=name)
            top = r["attributes"][0] if r["attributes"] else {}
            cmp[label] = {**bench_stats.timed_ms(lambda w=w, d=days, n=name: qc.compare(conn, w, now - d * DAY, now,
                                                                                       name=n), args.runs),
                          "selection": r["selection"], "rest": r["rest"], "sampled": r["sampled"],
                          "top": f"{top.get('key')}={top.get('value')} {top.get('selection_pct')} % vs "
                                 f"{top.get('rest_pct')} %"}
        out["compare"] = cmp
        conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
