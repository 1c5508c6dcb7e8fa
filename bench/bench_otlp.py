"""OTLP in and out benchmark (issue 3): ingest spans/s per path, and app CPU per span of forwarding.

    .venv/bin/python bench/bench_otlp.py [--spans 50000] [--rate 10000] [--seconds 5] [--repeat 3] [--json FILE]

Every producer is a fresh subprocess with one application thread creating spans of the same
10-attribute shape as bench_core.py (``bench_core._attrs``). Receivers are separate processes on
127.0.0.1 / ipc: a real collector (``python -m otel_telemetry collector run --config FILE``, fresh
temp database, ZeroMQ on ipc, OTLP/gRPC and OTLP/HTTP on free ports chosen here) and, for part 2,
``bench/otlp_sink.py`` (an OTLP/gRPC receiver that stores one SQLite row per span).

Part 1, ingest into our store, ``--spans`` spans flat out, one producer at a time:

  ingest-zmq        otel_telemetry.configure() (defaults, metrics/logs off) → collector over ZeroMQ
  ingest-otlp-grpc  SDK + BatchSpanProcessor(max_queue_size=--bsp-queue) + official
                    OTLPSpanExporter (grpc, insecure) → the collector's OTLP/gRPC receiver
  ingest-otlp-http  the same with the official OTLP/HTTP protobuf exporter → OTLP/HTTP receiver

  e2e window     from just before the first span starts until the first poll (every 10 ms, made
                 after the app's shutdown() returned) at which the store holds every row it will
                 hold: the target (ZeroMQ: the transport's ``sent``; OTLP: all spans created), or,
                 if the count stops short, the moment it last changed (settled for --settle s)
  stored/s       span rows in the store / e2e window

Part 2, app-process CPU at a steady --rate spans/s for --seconds (paced in chunks of 50 spans
with sleep), time.process_time() of the producer process (all threads: app, sender/exporter
worker, gRPC) from just before the first span until shutdown() returned:

  fwd-zmq           configure() → ZeroMQ → collector (receivers.otlp_* disabled) with
                    ``forward: [{endpoint: grpc://127.0.0.1:PORT, protocol: grpc}]`` → otlp_sink.py
  fwd-bsp-grpc      SDK + BatchSpanProcessor(max_queue_size=--bsp-queue) + official
                    OTLPSpanExporter (grpc) → the same otlp_sink.py directly
  paced-sdk-noop    (floor) SDK TracerProvider without any processor, same pacing

After each forwarding run the parent waits (bounded, --forward-timeout) until the sink holds every
span: that checks forwarding delivered everything. The collector's CPU (/proc utime+stime, from
before the producer starts until the sink holds everything) is reported too, for context.

Each repeat runs every variant of a part once, in a rotated order; the tables report medians.
The machine is shared and noisy: read the ratios, which are taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _attrs, _env, _fmt, _poll_until, _stop, _wait, machine  # noqa: E402

HERE = Path(__file__).resolve().parent
INGEST_VARIANTS = ("ingest-zmq", "ingest-otlp-grpc", "ingest-otlp-http")
CPU_VARIANTS = ("fwd-zmq", "fwd-bsp-grpc", "paced-sdk-noop")
CHILD_TIMEOUT = 180.0
POLL = 0.01
CHUNK = 50


# ---------------------------------------------------------------------------------------------
# child: one producer
# ---------------------------------------------------------------------------------------------
def _provider(variant: str, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(tracer_provider, telemetry handle or None) for a variant."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if variant in ("ingest-zmq", "fwd-zmq"):
        import otel_telemetry

        tel = otel_telemetry.configure("bench", endpoint=args.endpoint, metrics=False, logs=False,
                                       set_global=False)
        return tel.tracer_provider, tel
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    if variant == "paced-sdk-noop":
        return provider, None
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if variant in ("ingest-otlp-grpc", "fwd-bsp-grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=args.endpoint, insecure=True)
    elif variant == "ingest-otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=args.endpoint)
    else:
        raise SystemExit(f"unknown variant {variant}")
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=args.bsp_queue))
    return provider, None


def _store_count(db: str) -> int:
    import apsw

    try:
        conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM records WHERE type = 'span'").fetchall()[0][0]
    except apsw.Error:
        return 0
    finally:
        conn.close()


def _poll_settled(read, target: int, settle: float, timeout: float) -> tuple[int, float]:
    """Poll until read() >= target, or it stopped changing for ``settle`` s; (value, t_reached)
    where t_reached is the first time the final value was seen."""
    end = time.monotonic() + timeout
    last, t_last = read(), time.monotonic()
    while True:
        if last >= target:
            return last, t_last
        time.sleep(POLL)
        v, now = read(), time.monotonic()
        if v != last:
            last, t_last = v, now
        elif now - t_last >= settle or now >= end:
            return last, t_last


def child(args: argparse.Namespace) -> dict:
    import gc

    variant = args.child
    provider, tel = _provider(variant, args)
    tracer = provider.get_tracer("bench")
    attrs = _attrs
    out: dict = {"variant": variant}
    gc.collect()

    if variant.startswith("ingest-"):
        n = args.spans
        t0 = time.monotonic()
        c0 = time.process_time()
        for i in range(n):
            span = tracer.start_span("bench.op", attributes=attrs(i))
            span.end()
        t1 = time.monotonic()
    else:
        n = int(args.rate * args.seconds)
        interval = CHUNK / args.rate
        t0 = time.monotonic()
        c0 = time.process_time()
        i = 0
        while i < n:
            stop = min(i + CHUNK, n)
            for j in range(i, stop):
                span = tracer.start_span("bench.op", attributes=attrs(j))
                span.end()
            i = stop
            delay = t0 + (i // CHUNK) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t1 = time.monotonic()
    c1 = time.process_time()
    if tel is not None:
        out["connected_at_loop_end"] = tel.transport.connected
        tel.shutdown(30)
    else:
        provider.shutdown()
    t2, c2 = time.monotonic(), time.process_time()
    out.update(spans=n, loop_s=t1 - t0, rate_achieved=n / (t1 - t0), shutdown_s=t2 - t1,
               cpu_loop_us=(c1 - c0) / n * 1e6, cpu_total_us=(c2 - c0) / n * 1e6, t0=t0, t2=t2)
    target = n
    if tel is not None:
        counters = tel.counters()
        out["sent"], out["dropped"] = counters["sent"], counters["dropped"]
        target = counters["sent"]
    if variant.startswith("ingest-"):
        seen, t3 = _poll_settled(lambda: _store_count(args.db), target, args.settle, args.store_timeout)
        out.update(stored_seen=seen, e2e_s=t3 - t0, store_wait_s=max(0.0, t3 - t2))
    return out


# ---------------------------------------------------------------------------------------------
# parent: receivers, subprocesses, tables
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _proc_cpu(pid: int) -> float:
    """utime+stime of a process (all threads) in seconds, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_env() -> dict:
    env = _env()
    for k in list(env):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy"):
            del env[k]
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def run_child(variant: str, args: argparse.Namespace, tmp: Path, extra: list[str]) -> dict:
    errf = tmp / f"{variant}.child.err"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--spans", str(args.spans),
           "--rate", str(args.rate), "--seconds", str(args.seconds), "--bsp-queue", str(args.bsp_queue),
           "--settle", str(args.settle), "--store-timeout", str(args.store_timeout), *extra]
    with open(errf, "wb") as err:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, env=_child_env(), timeout=CHILD_TIMEOUT)
    if p.returncode != 0:
        raise RuntimeError(f"{variant} child failed rc={p.returncode}: {errf.read_text()[-2000:]}")
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    warn = [ln for ln in errf.read_text(errors="replace").splitlines() if "dropping" in ln or "Failed" in ln]
    if warn:
        res["child_warnings"] = warn[:5] + ([f"... {len(warn) - 5} more"] if len(warn) > 5 else [])
    return res


class Collector:
    """A real collector process with a bench config; readiness = ipc socket + OTLP ports accept."""

    def __init__(self, tmp: Path, *, otlp: bool, forward_port: int | None = None,
                 flush_interval: float | None = None) -> None:
        self.tmp, self.db, self.sock = tmp, tmp / "c.db", tmp / "c.ipc"
        self.grpc_port = free_port() if otlp else None
        self.http_port = free_port() if otlp else None
        lines = ["retention:", "  interval: 3600"]
        if flush_interval is not None:
            lines += ["store:", f"  flush_interval: {flush_interval}"]
        lines += ["receivers:"]
        if otlp:
            lines += ["  otlp_grpc:", f"    endpoint: 127.0.0.1:{self.grpc_port}",
                      "  otlp_http:", f"    endpoint: 127.0.0.1:{self.http_port}"]
        else:
            lines += ["  otlp_grpc:", "    enabled: false", "  otlp_http:", "    enabled: false"]
        if forward_port is not None:
            lines += ["forward:", f"  - {{endpoint: 'grpc://127.0.0.1:{forward_port}', protocol: grpc}}"]
        self.config = tmp / "collector.yaml"
        self.config.write_text("\n".join(lines) + "\n")
        self.err = tmp / "collector.err"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Collector:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(self.config),
             "--db", str(self.db), "--endpoint", f"ipc://{self.sock}"],
            stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"), env=_env())
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                return True
            if not self.sock.exists():
                return False
            return all(_port_open(p) for p in (self.grpc_port, self.http_port) if p is not None)

        _wait(ready, 30, "collector bind")
        if proc.poll() is not None:
            raise RuntimeError(self.err.read_text())
        return self

    def cpu(self) -> float:
        assert self.proc is not None
        return _proc_cpu(self.proc.pid)

    def status(self) -> dict:
        import apsw

        try:
            conn = apsw.Connection(str(self.db), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                rows = conn.execute("SELECT body FROM collector_status WHERE id = 1").fetchall()
            finally:
                conn.close()
        except apsw.Error:
            return {}
        return json.loads(rows[0][0]) if rows else {}

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.rc = _stop(self.proc)


class Sink:
    """bench/otlp_sink.py: OTLP/gRPC receiver storing one row per span; commits before answering."""

    def __init__(self, tmp: Path) -> None:
        self.db, self.ready, self.count_file = tmp / "sink.db", tmp / "sink.port", tmp / "sink.count"
        self.err = tmp / "sink.err"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def __enter__(self) -> Sink:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "otlp_sink.py"), "--db", str(self.db), "--ready", str(self.ready),
             "--count-file", str(self.count_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"), env=_env())
        proc = self.proc
        _wait(lambda: self.ready.exists() or proc.poll() is not None, 30, "OTLP sink")
        if proc.poll() is not None:
            raise RuntimeError(self.err.read_text())
        self.port = int(self.ready.read_text().strip())
        return self

    def count(self) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        except sqlite3.Error:
            return 0
        try:
            return conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        except sqlite3.Error:
            return 0
        finally:
            conn.close()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            _stop(self.proc)
        self.final = json.loads(self.count_file.read_text()) if self.count_file.exists() else {}


def run_ingest(variant: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as d:
        tmp = Path(d)
        with Collector(tmp, otlp=True, flush_interval=args.flush_interval) as col:
            if variant == "ingest-zmq":
                endpoint = f"ipc://{col.sock}"
            elif variant == "ingest-otlp-grpc":
                endpoint = f"127.0.0.1:{col.grpc_port}"
            else:
                endpoint = f"http://127.0.0.1:{col.http_port}/v1/traces"
            res = run_child(variant, args, tmp, ["--endpoint", endpoint, "--db", str(col.db)])
            status = col.status()
        res["stored"] = _store_count(str(col.db))
        res["collector_rc"] = col.rc
        recv = {"ingest-zmq": "zmq", "ingest-otlp-grpc": "otlp_grpc", "ingest-otlp-http": "otlp_http"}[variant]
        res["receiver_counters"] = status.get(recv)
        res["pct_stored"] = 100.0 * res["stored"] / res["spans"]
        res["stored_per_s"] = res["stored_seen"] / res["e2e_s"] if res.get("e2e_s") else None
        return res


def run_cpu(variant: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as d:
        tmp = Path(d)
        if variant == "paced-sdk-noop":
            return run_child(variant, args, tmp, [])
        with Sink(tmp) as sink:
            n = int(args.rate * args.seconds)
            if variant == "fwd-bsp-grpc":
                res = run_child(variant, args, tmp, ["--endpoint", f"127.0.0.1:{sink.port}"])
                res["sink_seen"], t_seen = sink.count(), time.monotonic()
            else:
                with Collector(tmp, otlp=False, forward_port=sink.port, flush_interval=args.flush_interval) as col:
                    cc0 = col.cpu()
                    res = run_child(variant, args, tmp, ["--endpoint", f"ipc://{col.sock}"])
                    seen, t_seen = _poll_until(sink.count, res.get("sent", n), args.forward_timeout)
                    cc1 = col.cpu()
                    res["sink_seen"] = seen
                    res["collector_cpu_us"] = (cc1 - cc0) / n * 1e6
                    time.sleep(1.2)  # let the collector write one more status row
                    res["forward_counters"] = (col.status().get("forward") or {})
                res["collector_rc"] = col.rc
            res["sink_wait_s"] = max(0.0, t_seen - res["t2"])
        res["sink_final"] = sink.final
        res["sink_pct"] = 100.0 * res["sink_seen"] / res["spans"]
        return res


def _med(rs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(ingest: dict[str, list[dict]], cpu: dict[str, list[dict]], args: argparse.Namespace,
           mach: dict) -> tuple[str, dict]:
    L: list[str] = []
    ratios: dict = {}
    L.append(f"machine: nproc={mach['nproc']} (affinity {mach['affinity']}), python {mach['python']}, "
             f"opentelemetry-sdk {mach['opentelemetry-sdk']}, grpcio {mach['grpcio']}, pyzmq {mach['pyzmq']}, "
             f"loadavg at start {mach['loadavg'][0]:.2f} (shared machine)")
    flush = f"{args.flush_interval} s (--flush-interval)" if args.flush_interval is not None else "default (0.2 s)"
    L.append(f"collector store.flush_interval: {flush}")
    if ingest:
        L.append("")
        L.append(f"Part 1: ingest into the store, {args.spans} spans x 10 attributes flat out, "
                 f"median of {args.repeat} runs")
        L.append("")
        L.append("| path | app wall µs/span (loop) | app CPU µs/span (incl. shutdown) | shutdown s | stored "
                 "| % stored (min) | e2e window s | stored spans/s | ÷ ZeroMQ |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        base = _med(ingest.get("ingest-zmq", []), "stored_per_s")
        for v, rs in ingest.items():
            wall = statistics.median(r["loop_s"] / r["spans"] * 1e6 for r in rs)
            sps = _med(rs, "stored_per_s")
            rel = sps / base if sps and base else None
            ratios[f"{v}_stored_per_s"] = sps
            ratios[f"{v}_pct_stored_min"] = min(r["pct_stored"] for r in rs)
            if rel is not None and v != "ingest-zmq":
                ratios[f"{v}_over_zmq"] = rel
            L.append(f"| {v} | {wall:.1f} | {_fmt(_med(rs, 'cpu_total_us'), '.1f')} | "
                     f"{_fmt(_med(rs, 'shutdown_s'), '.2f')} | {_fmt(_med(rs, 'stored'), '.0f')} | "
                     f"{_fmt(_med(rs, 'pct_stored'), '.2f')} ({min(r['pct_stored'] for r in rs):.2f}) | "
                     f"{_fmt(_med(rs, 'e2e_s'), '.2f')} | {_fmt(sps, ',.0f')} | {_fmt(rel, '.2f')} |")
        for v, rs in ingest.items():
            L.append(f"  {v} stored/s per run: {', '.join(_fmt(r.get('stored_per_s'), ',.0f') for r in rs)}")
    if cpu:
        n = int(args.rate * args.seconds)
        L.append("")
        L.append(f"Part 2: app-process CPU at {args.rate} spans/s for {args.seconds} s ({n} spans), "
                 f"process_time() of the producer until shutdown() returned, median of {args.repeat} runs")
        L.append("")
        L.append("| variant | achieved spans/s | app CPU µs/span (loop) | app CPU µs/span (incl. shutdown) "
                 "| shutdown s | sink received | % | collector CPU µs/span |")
        L.append("|---|---|---|---|---|---|---|---|")
        for v, rs in cpu.items():
            sink = _med(rs, "sink_seen")
            L.append(f"| {v} | {_fmt(_med(rs, 'rate_achieved'), ',.0f')} | {_fmt(_med(rs, 'cpu_loop_us'), '.1f')} | "
                     f"{_fmt(_med(rs, 'cpu_total_us'), '.1f')} | {_fmt(_med(rs, 'shutdown_s'), '.2f')} | "
                     f"{_fmt(sink, '.0f')} | {_fmt(_med(rs, 'sink_pct'), '.2f')} | "
                     f"{_fmt(_med(rs, 'collector_cpu_us'), '.1f')} |")
        if "fwd-zmq" in cpu and "fwd-bsp-grpc" in cpu:
            a, b = _med(cpu["fwd-zmq"], "cpu_total_us"), _med(cpu["fwd-bsp-grpc"], "cpu_total_us")
            r = a / b
            paired = [x["cpu_total_us"] / y["cpu_total_us"] for x, y in zip(cpu["fwd-zmq"], cpu["fwd-bsp-grpc"],
                                                                            strict=False)]
            ratios["cpu_fwd_zmq_over_bsp_grpc"] = r
            ratios["cpu_fwd_zmq_over_bsp_grpc_per_run"] = paired
            L.append("")
            L.append(f"app CPU/span fwd-zmq ÷ fwd-bsp-grpc = {r:.2f}  (target <= 0.5: "
                     f"{'MET' if r <= 0.5 else 'MISSED'}); per run: {', '.join(f'{x:.2f}' for x in paired)}")
            if "paced-sdk-noop" in cpu:
                f = _med(cpu["paced-sdk-noop"], "cpu_total_us")
                if f is not None and b - f > 0:
                    r2 = (a - f) / (b - f)
                    ratios["cpu_overhead_over_sdk_floor_ratio"] = r2
                    L.append(f"(context) CPU above the bare-SDK floor ({f:.1f} µs): fwd-zmq {a - f:.1f}, "
                             f"fwd-bsp-grpc {b - f:.1f} µs/span, ratio {r2:.2f}")
            mins = [x["sink_pct"] for x in cpu["fwd-zmq"]]
            ratios["fwd_zmq_sink_pct_min"] = min(mins)
            L.append(f"forwarding delivered: sink received {', '.join(str(x['sink_seen']) for x in cpu['fwd-zmq'])} "
                     f"of {n} per run, waited {', '.join(format(x['sink_wait_s'], '.2f') for x in cpu['fwd-zmq'])} s "
                     f"after the app's shutdown ({'ALL' if min(mins) >= 100 else 'INCOMPLETE'})")
    return "\n".join(L), ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="OTLP in/out benchmark (issue 3)")
    ap.add_argument("--spans", type=int, default=50_000, help="spans per ingest run (part 1)")
    ap.add_argument("--rate", type=float, default=10_000, help="spans/s of the paced CPU runs (part 2)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of a paced run (part 2)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bsp-queue", type=int, default=100_000, help="BatchSpanProcessor max_queue_size")
    ap.add_argument("--parts", default="ingest,cpu", help="ingest, cpu or both")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="ingest: stop polling when the stored count stopped changing this long")
    ap.add_argument("--store-timeout", type=float, default=60.0)
    ap.add_argument("--forward-timeout", type=float, default=60.0, help="most seconds to wait for the sink")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="collector store.flush_interval (default: the collector's default, 0.2 s)")
    ap.add_argument("--json", default=None, help="save raw results and summary to FILE")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child(args)))
        return 0

    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    mach = machine()
    started = time.monotonic()
    ingest: dict[str, list[dict]] = {v: [] for v in INGEST_VARIANTS} if "ingest" in parts else {}
    cpu: dict[str, list[dict]] = {v: [] for v in CPU_VARIANTS} if "cpu" in parts else {}
    for r in range(args.repeat):
        for table, fn, variants in ((ingest, run_ingest, INGEST_VARIANTS), (cpu, run_cpu, CPU_VARIANTS)):
            if not table:
                continue
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:
                res = fn(v, args)
                table[v].append(res)
                if "stored" in res:
                    extra = (f"stored={res['stored']}/{res['spans']} e2e={res['e2e_s']:.2f}s "
                             f"stored/s={_fmt(res.get('stored_per_s'), ',.0f')}")
                else:
                    extra = (f"rate={res['rate_achieved']:,.0f}/s cpu={res['cpu_total_us']:.1f}µs/span "
                             f"sink={res.get('sink_seen', '–')}")
                warn = f" WARN {res['child_warnings']}" if res.get("child_warnings") else ""
                print(f"[run {r + 1}/{args.repeat}] {v}: {extra} shutdown={res['shutdown_s']:.2f}s{warn}",
                      file=sys.stderr, flush=True)
    text, ratios = report(ingest, cpu, args, mach)
    print(text)
    print(f"\n(total bench time {time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "machine": mach, "ingest": ingest, "cpu": cpu, "ratios": ratios},
                      f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
