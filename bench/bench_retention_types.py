"""Retention by record type (issue 17): what a purge step costs when a category's types keep
different days, against category-only settings, on a real database file.

One category holds ``--rows`` rows: spans of the last 29 days and metrics 31..179 days old, so with
001's ``span: 30, metric: 180`` nothing is expired, yet the span cell's index walk passes over
every metric older than 30 days. Times ``purge_step`` (nothing to delete: the steady state of a
collector) and one step that deletes 5 000 rows, for both settings; prints the ratios. Short, on a
shared and noisy 2-core machine: medians of ``--repeat`` runs.

    .venv/bin/python bench/bench_retention_types.py --rows 200000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from otel_telemetry.store import retention as ret
from otel_telemetry.store import writer as store
from otel_telemetry.store.schema import COLUMNS

NOW = 1_800_000_000 * 10**9
DAY = ret.NS_PER_DAY


def _row(n: int, ts: int, rtype: str) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(uid=n.to_bytes(16, "big"), timestamp=ts, type=rtype, category="system_performance",
                  level="info", data='{"attributes": {"k": "v"}}', metadata="{}")
    return tuple(values[c] for c in COLUMNS)


def _fill(path: str, rows: int) -> None:
    conn = store.open_writer(path)
    batch = []
    for n in range(rows):
        if n % 2:
            batch.append(_row(n, NOW - (31 * DAY + (n * 7919) % (148 * DAY)), "metric"))
        else:
            batch.append(_row(n, NOW - (n * 7919) % (29 * DAY), "span"))
        if len(batch) == 10_000:
            with ret.transaction(conn):
                conn.executemany(f"INSERT INTO records({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                 batch)
            batch.clear()
    if batch:
        with ret.transaction(conn):
            conn.executemany(f"INSERT INTO records({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                             batch)
    conn.close()


def _time(path: str, days: dict[str, int], now: int, repeat: int) -> tuple[float, int]:
    times, deleted = [], 0
    for _ in range(repeat):
        conn = store.open_writer(path)
        t0 = time.perf_counter()
        deleted = sum(ret.purge_step(conn, days, now, 5000).values())
        times.append(time.perf_counter() - t0)
        conn.close()
    return statistics.median(times) * 1000, deleted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "r.db")
        _fill(base, args.rows)
        by_type = {"system_performance": 30, "span": 30, "metric": 180}
        by_category = {"system_performance": 180}
        print(f"{args.rows} rows in one category (spans < 29 d, metrics 31..179 d); medians of {args.repeat}")
        # Nothing expired: the steady state. (A step that deletes nothing changes nothing: repeatable.)
        t_type, d1 = _time(base, by_type, NOW, args.repeat)
        t_cat, d2 = _time(base, by_category, NOW, args.repeat)
        assert d1 == d2 == 0
        print(f"nothing expired   category-only {t_cat:8.2f} ms   span 30 + metric 180 {t_type:8.2f} ms   "
              f"ratio {t_type / max(t_cat, 1e-9):.1f}x")
        # One step that deletes 5 000 rows (each run on a fresh copy of the file).
        results = {}
        for label, days, now in (("category-only", {"system_performance": 30}, NOW),
                                 ("by type", {"system_performance": 30, "span": 20, "metric": 180}, NOW)):
            times = []
            for _ in range(args.repeat):
                copy = str(Path(tmp) / "copy.db")
                Path(copy).write_bytes(Path(base).read_bytes())
                conn = store.open_writer(copy)
                t0 = time.perf_counter()
                n = sum(ret.purge_step(conn, days, now, 5000).values())
                times.append(time.perf_counter() - t0)
                conn.close()
                assert n == 5000, n
            results[label] = statistics.median(times) * 1000
        cat, typ = results["category-only"], results["by type"]
        print(f"5 000 deleted     category-only {cat:8.2f} ms   by type {typ:8.2f} ms   ratio {typ / cat:.1f}x")


if __name__ == "__main__":
    main()
