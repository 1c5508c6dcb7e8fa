"""The collector alone (issue 13): stored spans/s and CPU µs per span, fed as fast as it takes them.

    .venv/bin/python bench/bench_collector.py [--requests 20000] [--repeat 3] [--cpus 1]
                                              [--parts zmq,otlp-http,stages] [--json FILE]

Input is the realistic workload (bench/workloads.py), encoded once before any timing:

  zmq        the frames a real app (``configure()``, default settings, ipc endpoint) sends for
             ``--requests`` requests, captured by a SUB socket; replayed to a real collector process
             by one XPUB socket as fast as the socket takes them (every replay under a fresh
             publisher id, so the collector's sequence checks see a new app each time)
  otlp-http  the same spans as OTLP/HTTP protobuf requests of 512 spans (the official encoder,
             run once), posted by one keep-alive http.client connection that does no encoding of
             its own, the way a Go or Java SDK would
  stages     the collector's stages run one after the other in this process, single thread, on
             the captured ZeroMQ batches: decode, redact, map (incl. GenAI normalisation), insert
             (rows + indexes, one transaction per batch, no rollups) and rollups; CPU µs per span
             of each (time.process_time)

The collector runs with default settings (redaction on) on a fresh temp database, pinned to the
first ``--cpus`` cores with ``taskset`` (one core by default, the issue's "on one core"; the
replaying client then runs on the other). Stored spans/s = spans / (first send → the store
holds them all); collector CPU = /proc utime+stime over that window / spans.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402
from bench_core import _env, _stop, _wait  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


# ---------------------------------------------------------------------------------------------
# input: capture once
# ---------------------------------------------------------------------------------------------
def capture_zmq(requests: int, path: Path) -> list[list[bytes]]:
    """Run the workload through ``configure()`` into a SUB socket; the frames, in order."""
    import zmq

    import otel_telemetry

    sock_path = path.with_suffix(".ipc")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.bind(f"ipc://{sock_path}")
    sub.setsockopt(zmq.SUBSCRIBE, b"telemetry.")
    frames: list[list[bytes]] = []
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set() or sub.poll(200):
            if sub.poll(50):
                frames.append(sub.recv_multipart())

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    tel = otel_telemetry.configure("bench-app", endpoint=f"ipc://{sock_path}", metrics=False, logs=False,
                                   set_global=False, join_timeout=10)
    tracer = tel.tracer_provider.get_tracer("bench")
    wl = workloads.make("realistic", requests)
    for i in range(requests):
        wl.run(tracer, i)
    tel.shutdown(60)
    stop.set()
    t.join(30)
    sub.close(0)
    ctx.term()
    data = [f for f in frames if f[0] != b"telemetry._control"]
    sent = tel.counters()["sent"]
    got = sum(int.from_bytes(f[1][-4:], "big") for f in data)
    if got != sent or got != workloads.total_spans(requests, "realistic"):
        raise RuntimeError(f"capture incomplete: {got} records captured, {sent} sent")
    path.write_bytes(msgpack.packb(data))
    return data


def encode_otlp(requests: int, path: Path) -> list[bytes]:
    """The same workload's spans as OTLP/HTTP protobuf bodies of 512 spans (official encoder)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-app"}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("bench")
    wl = workloads.make("realistic", requests)
    for i in range(requests):
        wl.run(tracer, i)
    spans = mem.get_finished_spans()
    bodies = [encode_spans(spans[i:i + 512]).SerializeToString() for i in range(0, len(spans), 512)]
    path.write_bytes(msgpack.packb(bodies))
    return bodies


# ---------------------------------------------------------------------------------------------
# a real collector process
# ---------------------------------------------------------------------------------------------
class Collector:
    def __init__(self, tmp: Path, cpus: int, http_port: int | None = None) -> None:
        self.db, self.sock = tmp / "c.db", tmp / "c.ipc"
        cfg = tmp / "c.yaml"
        http = f"127.0.0.1:{http_port}" if http_port else "127.0.0.1:0"
        cfg.write_text("receivers:\n  otlp_grpc:\n    endpoint: 127.0.0.1:0\n"
                       f"  otlp_http:\n    endpoint: {http}\nretention:\n  interval: 3600\n")
        cmd = [sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(cfg),
               "--db", str(self.db), "--endpoint", f"ipc://{self.sock}"]
        if cpus:
            cmd = ["taskset", "-c", ",".join(str(c) for c in range(cpus)), *cmd]
        self.err = tmp / "collector.err"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.err, "wb"), env=_env())
        _wait(lambda: self.sock.exists() or self.proc.poll() is not None, 30, "collector bind")
        if self.proc.poll() is not None:
            raise RuntimeError(self.err.read_text())

    def stored(self) -> int:
        import apsw

        try:
            conn = apsw.Connection(str(self.db), flags=apsw.SQLITE_OPEN_READONLY)
        except apsw.Error:
            return 0
        try:
            return conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchall()[0][0]
        except apsw.Error:
            return 0
        finally:
            conn.close()

    def wait_stored(self, target: int, timeout: float = 300) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.stored() >= target:
                return time.monotonic()
            if self.proc.poll() is not None:
                raise RuntimeError(self.err.read_text()[-2000:])
            time.sleep(0.01)
        raise RuntimeError(f"store holds {self.stored()} of {target} after {timeout} s")

    def stop(self) -> None:
        _stop(self.proc)


def _restamp(frames: list[list[bytes]], publisher: bytes) -> list[list[bytes]]:
    out, nxt = [], {}
    for topic, header, payload in frames:
        h = bytearray(header)  # "!2sBB16sQI": publisher at 4..20, seq at 20..28 (flags kept as sent)
        h[4:20] = publisher
        seq = nxt.get(topic, 0)
        h[20:28] = seq.to_bytes(8, "big")
        nxt[topic] = seq + int.from_bytes(header[-4:], "big")
        out.append([topic, bytes(h), payload])
    return out


def run_zmq(frames: list[list[bytes]], spans: int, args: argparse.Namespace) -> dict:
    import zmq

    with tempfile.TemporaryDirectory(prefix="bench-collector-") as d:
        col = Collector(Path(d), args.cpus)
        ctx = zmq.Context()
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_NODROP, 1)
        pub.setsockopt(zmq.SNDHWM, 1000)
        pub.connect(f"ipc://{col.sock}")
        if not pub.poll(30_000):
            raise RuntimeError("the collector never subscribed")
        pub.recv()
        msgs = _restamp(frames, os.urandom(16))
        try:
            c0, t0 = _cpu_s(col.proc.pid), time.monotonic()
            for m in msgs:
                pub.send_multipart(m)  # blocks (NODROP) while the collector's pipe is full
            t1 = col.wait_stored(spans)
            c1 = _cpu_s(col.proc.pid)
        finally:
            pub.close(linger=5000)
            ctx.term()
            col.stop()
    return {"spans": spans, "seconds": t1 - t0, "spans_per_s": spans / (t1 - t0),
            "cpu_us_per_span": (c1 - c0) / spans * 1e6}


def run_otlp_http(bodies: list[bytes], spans: int, args: argparse.Namespace) -> dict:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as d:
        col = Collector(Path(d), args.cpus, http_port=port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        _wait(lambda: _port_open(port), 30, "OTLP/HTTP receiver")
        try:
            c0, t0 = _cpu_s(col.proc.pid), time.monotonic()
            for body in bodies:
                while True:
                    conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                    if resp.status not in (429, 503):
                        raise RuntimeError(f"OTLP/HTTP answered {resp.status}")
                    time.sleep(0.01)
            t1 = col.wait_stored(spans)
            c1 = _cpu_s(col.proc.pid)
        finally:
            conn.close()
            col.stop()
    return {"spans": spans, "seconds": t1 - t0, "spans_per_s": spans / (t1 - t0),
            "cpu_us_per_span": (c1 - c0) / spans * 1e6}


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run_stages(frames: list[list[bytes]], spans: int) -> dict:
    """Each stage over every batch, one after the other, in this process: CPU µs per span."""
    from otel_telemetry import categories as cats
    from otel_telemetry import wire
    from otel_telemetry.collector import mapping
    from otel_telemetry.collector.redaction import BatchRedactor, parse_redaction
    from otel_telemetry.store import db as store_db
    from otel_telemetry.store import rollups
    from otel_telemetry.store.schema import COLUMNS

    out: dict = {}

    def timed(name: str, fn) -> object:  # type: ignore[no-untyped-def]
        c0 = time.process_time()
        res = fn()
        out[name] = (time.process_time() - c0) / spans * 1e6
        return res

    msgs = _restamp(frames, os.urandom(16))
    decoded = timed("decode", lambda: [(wire.decode_header(m), wire.decode_payload(wire.decode_header(m), m[2]),
                                        cats.parse_topic(m[0].decode())) for m in msgs])
    red = BatchRedactor(parse_redaction(None, "redaction"))
    kinds = [wire.KIND_NAMES[h.kind] for h, _, _ in decoded]

    def redact() -> list:
        return [red.apply(k, dict(r), list(recs)) for k, (_, (r, recs), _) in zip(kinds, decoded, strict=True)]

    redacted = timed("redact", redact)
    rows = timed("map", lambda: [list(mapping.rows_from_batch(k, r, recs, topic, h.publisher + bytes(8)))
                                 for k, (r, recs, _), (h, _, topic) in zip(kinds, redacted, decoded, strict=True)])
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as d:
        conn = store_db.open_writer(str(Path(d) / "s.db"))
        sql = f"INSERT OR IGNORE INTO records({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

        def insert() -> None:
            for batch in rows:
                with conn:
                    conn.executemany(sql, batch)

        timed("insert", insert)

        def roll() -> None:
            for batch in rows:
                with conn:
                    rollups.update(conn, batch, (None,))

        timed("rollups", roll)
        conn.close()
    out["total"] = sum(out.values())
    return out


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the collector alone (issue 13)")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=1, help="cores the collector may use (taskset); 0 = all")
    ap.add_argument("--parts", default="zmq,otlp-http,stages")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    spans = workloads.total_spans(args.requests, "realistic")
    results: dict[str, list[dict]] = {p: [] for p in parts}
    with tempfile.TemporaryDirectory(prefix="bench-collector-input-") as d:
        frames = capture_zmq(args.requests, Path(d) / "frames.msgpack") if {"zmq", "stages"} & set(parts) else []
        bodies = encode_otlp(args.requests, Path(d) / "otlp.msgpack") if "otlp-http" in parts else []
    print(f"input: {args.requests} realistic requests = {spans} spans; {len(frames)} ZeroMQ messages, "
          f"{len(bodies)} OTLP/HTTP requests; collector on {args.cpus or 'all'} core(s)", file=sys.stderr)
    for r in range(args.repeat):
        for p in parts:
            res = {"zmq": lambda: run_zmq(frames, spans, args),
                   "otlp-http": lambda: run_otlp_http(bodies, spans, args),
                   "stages": lambda: run_stages(frames, spans)}[p]()
            results[p].append(res)
            print(f"[run {r + 1}/{args.repeat}] {p}: {json.dumps({k: round(v, 1) for k, v in res.items()})}",
                  file=sys.stderr, flush=True)
    print(f"\nrealistic workload: {spans} spans per run, median of {args.repeat} runs, "
          f"collector pinned to {args.cpus or 'all'} core(s)\n")
    print("| input | stored spans/s | collector CPU µs/span |\n|---|---|---|")
    for p in ("zmq", "otlp-http"):
        if results.get(p):
            med = {k: statistics.median(x[k] for x in results[p]) for k in ("spans_per_s", "cpu_us_per_span")}
            print(f"| {p} | {med['spans_per_s']:,.0f} | {med['cpu_us_per_span']:.1f} |")
    if results.get("stages"):
        keys = list(results["stages"][0])
        med = {k: statistics.median(x[k] for x in results["stages"]) for k in keys}
        print("\n| stage (one thread, in process) | CPU µs/span |\n|---|---|")
        for k in keys:
            print(f"| {k} | {med[k]:.1f} |")
        print(f"\n(stages alone: {1e6 / med['total']:,.0f} spans/s on one core)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
