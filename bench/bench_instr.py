"""Instructions per request under callgrind: a noise-free companion to bench_core.py's app wall.

    .venv/bin/python bench/bench_instr.py [--workload realistic|constant] [--requests 2000]
                                          [--variants sdk-noop,bsp-noop,ours,ours-app-redact]

On this shared 2-core host bench_core.py's app-wall ratio moves between ~1.2 and ~1.9 from run
to run. ``valgrind --tool=callgrind`` counts instructions, not seconds, so the same code gives
the same count whatever else the machine does. Each variant's producer (bench_core.py's child:
one app thread running requests of the workload, bench/workloads.py) runs under callgrind twice,
with N and 2N requests, each after 300 warm-up requests and a flush (so that "ours" has joined its collector
and learnt the span shape: callgrind runs one thread at a time and would otherwise starve the
sender thread); (I(2N) - I(N)) / N is the per-span cost with imports, setup, warm-up and shutdown's
fixed part cancelled out. Every thread of the producer process counts (app thread, our sender thread,
the SDK's batch worker, ZeroMQ's I/O thread): under the GIL the Python work of all threads is
serialised, so the sum is what the app pays. "ours" publishes to a real collector process (not
under valgrind) exactly as in bench_core.py.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_core  # noqa: E402
import workloads  # noqa: E402

VARIANTS = ("sdk-noop", "bsp-noop", "ours", "ours-app-redact")
_ENV = {"ours-app-redact": {"OTEL_TELEMETRY_REDACT_IN_APP": "always"}}
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def _instructions(out_file: Path) -> int:
    m = _TOTALS.search(out_file.read_bytes())
    if m is None:
        raise RuntimeError(f"no totals in {out_file}")
    return int(m.group(1))


def _run(variant: str, requests: int, workload: str, tmp: Path) -> int:
    out = tmp / f"{variant}.{requests}.callgrind"
    child = [str(HERE / "bench_core.py"), "--child", "ours" if variant.startswith("ours") else variant,
             "--requests", str(requests), "--workload", workload, "--store-timeout", "0", "--warmup", "300"]
    col = None
    if variant.startswith("ours"):
        db, sock = tmp / f"c{variant}{requests}.db", tmp / f"c{variant}{requests}.ipc"
        col = subprocess.Popen([sys.executable, "-m", "otel_telemetry", "collector", "run", "--db", str(db),
                                "--endpoint", f"ipc://{sock}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=bench_core._env())
        bench_core._wait(lambda: sock.exists(), 30, "collector bind")
        time.sleep(0.3)
        child += ["--endpoint", f"ipc://{sock}", "--db", str(db)]
    try:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
               "--separate-threads=no", sys.executable, *child]
        p = subprocess.run(cmd, capture_output=True, env=bench_core._env() | _ENV.get(variant, {}), timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"{variant} rc={p.returncode}: {p.stderr.decode()[-2000:]}")
        if variant.startswith("ours"):  # a count from a run that dropped records would flatter us
            res = json.loads(p.stdout.decode().strip().splitlines()[-1])
            want = workloads.total_spans(requests, workload) + workloads.total_spans(300, workload)
            if res.get("dropped") or res.get("sent") != want:
                raise RuntimeError(f"ours under callgrind did not send every span: {res}")
    finally:
        if col is not None:
            bench_core._stop(col)
    return _instructions(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="instructions per request under callgrind (issue 2/13 companion)")
    ap.add_argument("--workload", choices=workloads.WORKLOADS, default="realistic")
    ap.add_argument("--requests", type=int, default=2000, help="N: runs with N and 2N requests")
    ap.add_argument("--spans", type=int, default=None, help="old spelling of --requests")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    if args.spans:
        args.requests = args.spans
    variants = [v for v in args.variants.split(",") if v]
    per: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as d:
        for v in variants:
            a = _run(v, args.requests, args.workload, Path(d))
            b = _run(v, 2 * args.requests, args.workload, Path(d))
            per[v] = (b - a) / args.requests
            print(f"{v}: {per[v]:,.0f} instructions/request  (N={args.requests}: {a:,}, 2N: {b:,})",
                  file=sys.stderr, flush=True)
    base = per.get("sdk-noop")
    print(f"\nworkload {args.workload}\n| variant | instructions/request | ÷ sdk-noop |\n|---|---|---|")
    for v in variants:
        ratio = f"{per[v] / base:.3f}" if base else "–"
        print(f"| {v} | {per[v]:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
