"""Insert cost of the ``(component, timestamp)`` index (issue 17 item 9: the AICO index list).

Two fresh database files with the real schema (``store.db.open_writer``), one with the
``records_component`` index dropped; the same ``--rows`` realistic rows (``bench_stats.make_row``:
GenAI calls, spans, logs, metrics) are inserted into each in transactions of ``--batch`` rows
with the store writer's own INSERT, alternately, ``--repeat`` times. Prints rows/s of each and
the ratio, over all rows and over the last half (an index costs more as the table grows).

    .venv/bin/python bench/bench_component_index.py --rows 200000 --repeat 3 [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import orjson
from bench_stats import make_row

from otel_telemetry.store import db
from otel_telemetry.store.writer import _INSERT

NS = 1_000_000_000


def run(path: str, rows: list[tuple[Any, ...]], batch: int, with_index: bool) -> tuple[float, float]:
    """(seconds for all rows, seconds for the last half)."""
    conn = db.open_writer(path)
    if not with_index:
        conn.execute("DROP INDEX records_component")
    half = len(rows) // 2
    t0 = time.perf_counter()
    t_half = t0
    for k in range(0, len(rows), batch):
        if k == half:
            t_half = time.perf_counter()
        with conn:
            conn.executemany(_INSERT, rows[k:k + batch])
    t1 = time.perf_counter()
    conn.close()
    return t1 - t0, t1 - t_half


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rnd = random.Random(7)
    now = time.time_ns()
    rows = [make_row(i, now - (args.rows - i) * NS // 100, rnd) for i in range(args.rows)]
    runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    tmp = tempfile.mkdtemp(prefix="bench-component-")
    try:
        for r in range(args.repeat):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for name in order:
                path = os.path.join(tmp, f"{name}-{r}.db")
                runs[name].append(run(path, rows, args.batch, name == "with"))
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.unlink(path + suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {"rows": args.rows, "batch": args.batch, "repeat": args.repeat}
    for name, rs in runs.items():
        out[name] = {"rows_per_s": round(args.rows / statistics.median(t for t, _ in rs)),
                     "last_half_rows_per_s": round((args.rows - args.rows // 2) / statistics.median(h for _, h in rs)),
                     "per_run_s": [round(t, 3) for t, _ in rs]}
    out["insert_time_ratio_with_over_without"] = round(
        statistics.median(t for t, _ in runs["with"]) / statistics.median(t for t, _ in runs["without"]), 3)
    out["last_half_ratio"] = round(
        statistics.median(h for _, h in runs["with"]) / statistics.median(h for _, h in runs["without"]), 3)
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
