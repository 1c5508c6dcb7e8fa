"""Does a sqld start-up option or a pragma sent by the client raise the server's shipping ceiling?
(issue 14: shipping throughput against a target above what sqld does here.)

Builds the ``bench_stats.py`` database (``--records`` rows), encodes every row beforehand exactly as
shipping does (rows + rollups + cursor, one transaction per 2 000 rows), then for each
configuration starts a fresh sqld on 127.0.0.1 and sends the requests one after the other:
rows/s of the server alone. Configurations alternate for ``--rounds`` rounds (a burst of load
from the other sessions on this shared machine falls on all alike); prints each one's median and
what the server answered when it refused a pragma or failed a chunk. Everything lives in a
temporary directory under /tmp, deleted at the end.

    .venv/bin/python bench/bench_sqld_options.py --records 30000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_libsql import SQLD, start_sqld  # noqa: E402
from bench_stats import build  # noqa: E402

from otel_telemetry.collector.sync import shipper as sh  # noqa: E402
from otel_telemetry.store import db as store_db  # noqa: E402
from otel_telemetry.store import libsql_conn as lc  # noqa: E402
from otel_telemetry.store import libsql_http as lh  # noqa: E402

CHUNK = 2000
# name -> (sqld arguments, statements sent first on each request's stream)
CONFIGS: dict[str, tuple[list[str], list[str]]] = {
    "default": ([], []),
    "--use-custom-wal libsql-wal": (["--use-custom-wal", "libsql-wal"], []),
    "--max-log-size 2000": (["--max-log-size", "2000"], []),
    "--checkpoint-interval-s 5": (["--checkpoint-interval-s", "5"], []),
    "--disable-intelligent-throttling": (["--disable-intelligent-throttling"], []),
    "PRAGMA synchronous=NORMAL": ([], ["PRAGMA synchronous=NORMAL"]),
}


def start(data: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    return start_sqld(data, tuple(extra))


def failures(answer: bytes) -> list[str]:
    """Refused statements and failed batch steps in one pipeline answer."""
    out = []
    for res in orjson.loads(answer)["results"]:
        if res.get("type") == "error":
            out.append(res["error"].get("message", "?"))
        elif res.get("response", {}).get("type") == "batch":
            out += [e.get("message", "?") for e in res["response"]["result"]["step_errors"] if e]
    return out


def one(data: Path, extra: list[str], pragmas: list[str], chunks: list[list[dict[str, Any]]],
        rows: int) -> tuple[float, int, list[str]]:
    """(rows/s, rows stored, first problems) for one configuration on a fresh server."""
    data.mkdir()
    proc, url = start(data, extra)
    problems: list[str] = []
    try:
        store_db.open_admin(url).close()
        client = lh.Client(url)
        first = [{"type": "execute", "stmt": lh.stmt(p, (), want_rows=False)} for p in pragmas]
        t = time.perf_counter()
        for c in chunks:
            body = orjson.dumps({"baton": None, "requests": first + lh.batch_requests(c, begin=True, end="commit")[0]
                                 + [{"type": "close"}]})
            client._send(body)
            status, answer = client._receive()
            if status != 200:
                raise RuntimeError(answer[:300])
            problems += failures(answer)
        dt = time.perf_counter() - t
        client.close()
        conn = lc.Connection(url)
        stored = int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)
    return rows / dt, stored, problems[:2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not SQLD.is_file():
        sys.exit(f"sqld missing at {SQLD}: run `make sqld`")
    tmp = Path(tempfile.mkdtemp(prefix="bench_sqld_options_"))
    try:
        path = str(tmp / "local.db")
        build(path, args.records, time.time_ns(), 5000)
        reader = store_db.open_reader(path)
        rows = reader.execute(sh._SELECT, (0, args.records)).fetchall()
        reader.close()
        chunks = [sh.ship_statements(rows[k:k + CHUNK], "options", rows[k - 1][0] if k else 0, time.time_ns())
                  for k in range(0, len(rows), CHUNK)]
        rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
        notes: dict[str, set[str]] = {name: set() for name in CONFIGS}
        for rnd in range(args.rounds):
            for i, (name, (extra, pragmas)) in enumerate(CONFIGS.items()):
                rate, stored, problems = one(tmp / f"{rnd}-{i}", extra, pragmas, chunks, len(rows))
                rates[name].append(rate)
                notes[name].update(p[:160] for p in problems)
                if stored != len(rows):
                    notes[name].add(f"stored {stored} of {len(rows)} rows (failed chunks roll back)")
                print(f"round {rnd} {name:34} {rate:7.0f} rows/s  load {os.getloadavg()[0]:.1f}", flush=True)
        base = statistics.median(rates["default"])
        print(f"\n{'configuration':34} {'median rows/s':>13} {'x default':>9}  runs")
        for name, v in rates.items():
            print(f"{name:34} {statistics.median(v):13.0f} {statistics.median(v) / base:9.2f}  "
                  f"{[round(x) for x in v]}")
            for n in sorted(notes[name]):
                print(f"    {n}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
