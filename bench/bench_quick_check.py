"""Cost of the collector's start-up check (``PRAGMA quick_check``, issue 15 item 15) on a big file.

Builds a store of ``--records`` rows through the real ``StoreWriter`` (``bench_stats.build``: the
same realistic rows as the stats bench), then times ``collector.service.check_store`` on it
``--runs`` times with the file in the page cache (a restart), and with ``--cold`` once first
after dropping the page cache (root only; a boot; it slows every other process on the machine
for a moment, hence opt-in). The database lives in a temporary directory under /tmp, deleted at the end.

    .venv/bin/python bench/bench_quick_check.py --records 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import build  # noqa: E402 - the bench folder is not a package

from otel_telemetry.collector.service import check_store  # noqa: E402


def _drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also time once after dropping the page cache")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-quick-check-")
    try:
        path = os.path.join(tmp, "t.db")
        built = build(path, args.records, time.time_ns(), 2000)
        size = os.path.getsize(path)
        cold = None
        if args.cold and _drop_caches():
            t = time.perf_counter()
            check_store(path)
            cold = time.perf_counter() - t
        warm = []
        for _ in range(args.runs):
            t = time.perf_counter()
            check_store(path)
            warm.append(time.perf_counter() - t)
        print(f"records={args.records} file={size / 2**20:.0f} MiB build={built['build_s']:.0f}s "
              f"quick_check cold={'n/a' if cold is None else f'{cold:.2f}s'} "
              f"warm median={statistics.median(warm):.2f}s ({size / 2**20 / statistics.median(warm):.0f} MiB/s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
