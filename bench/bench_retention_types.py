"""Retention by record type (issue 17): what a purge step costs when a category's types keep
different days, against category-only settings, on a real database file.

One category holds ``--rows`` rows: spans of the last 29 days and metrics 31..179 days old, so with
001's ``span: 30, metric: 180`` nothing is expired, yet the span cells must look past every metric
older than 30 days. Times a whole retention pass (``retention.Purge``, 5 000-row steps as the
collector's writer runs them) and its longest step, which is how long ingest waits, for
category-only and per-type settings. Short, on a shared and noisy 2-core machine: medians of
``--repeat`` runs.

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
            batch.append(_row(n, NOW - 31 * DAY - (n * 7919 % 148_000) * DAY // 1000, "metric"))
        else:
            batch.append(_row(n, NOW - (n * 7919 % 29_000) * DAY // 1000, "span"))
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


def _pass(path: str, days: dict[str, int], now: int) -> tuple[float, float, int, int]:
    """One retention pass with ``Purge`` on a fresh copy: (longest step ms, whole pass ms, steps, deleted)."""
    copy = path + ".copy"
    for suffix in ("", "-wal"):  # the WAL too, if the last close left one
        src, dst = Path(path + suffix), Path(copy + suffix)
        if src.exists():
            dst.write_bytes(src.read_bytes())
        elif dst.exists():
            dst.unlink()
    conn = store.open_writer(copy)
    purge = ret.Purge(days, now)
    longest, total, steps, deleted = 0.0, 0.0, 0, 0
    while not purge.done:
        t0 = time.perf_counter()
        deleted += sum(purge.step(conn, 5000).values())
        dt = time.perf_counter() - t0
        longest, total, steps = max(longest, dt), total + dt, steps + 1
    conn.close()
    return longest * 1000, total * 1000, steps, deleted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "r.db")
        _fill(base, args.rows)
        cases = (("category-only, nothing expired", {"system_performance": 180}),
                 ("span 30 + metric 180, nothing expired", {"system_performance": 30, "span": 30, "metric": 180}),
                 ("category 30 (metrics expire)", {"system_performance": 30}),
                 ("span 20 + metric 180 (spans expire)", {"system_performance": 30, "span": 20, "metric": 180}))
        print(f"{args.rows} rows in one category (spans < 29 d, metrics 31..179 d); 5 000-row steps; "
              f"medians of {args.repeat}")
        for label, days in cases:
            runs = [_pass(base, days, NOW) for _ in range(args.repeat)]
            longest = statistics.median(r[0] for r in runs)
            total = statistics.median(r[1] for r in runs)
            print(f"{label:40s} longest step {longest:8.2f} ms   pass {total:9.2f} ms   steps {runs[0][2]:4d}   "
                  f"deleted {runs[0][3]}")


if __name__ == "__main__":
    main()
