"""Core pipeline benchmark (issues 2 and 13): app cost and end-to-end stored throughput, side by side.

    .venv/bin/python bench/bench_core.py [--workload realistic|constant] [--requests 20000] [--repeat 5]

Every producer runs in its own fresh subprocess: one application thread runs ``--requests``
requests flat out. ``--workload realistic`` (the default, bench/workloads.py) is the traffic real
services produce: an HTTP server span per request with a path holding one of 5,000 ids, a unique
request id, a client IP, one of 1,000 user ids and a user agent; a DB child every 4th request; an LLM
child with a unique ~700-byte prompt every 20th. ``--workload constant`` is the old best case: one
10-attribute span per request whose values all repeat (it measures caches, not the product).
Variants:

  sdk-noop       SDK TracerProvider, no span processor                     (app-cost floor)
  sdk-noop+hog   the same while a pure-Python busy loop runs in another process: a control
                 for how much a busy second core (e.g. the collector) slows the app thread
  bsp-noop       SDK + BatchSpanProcessor(defaults) + exporter that does nothing  (reference)
  bsp-otlp-grpc  SDK + BatchSpanProcessor(defaults) + OTLPSpanExporter(insecure) to a local
                 OTLP/gRPC receiver process (bench/otlp_sink.py) that stores one row per span
  ours           otel_telemetry.configure() with default settings (metrics/logs off,
                 set_global False) publishing to a real collector process (default config,
                 temp database, ipc endpoint)
  ours-py        ours with the span fast path's C version off (OTEL_TELEMETRY_SPEEDUPS=0):
                 what an install without a C compiler pays
  ours-app-redact  ours with redaction in the app whatever the endpoint
                 (OTEL_TELEMETRY_REDACT_IN_APP=always): what an app that sends off the device pays
  ours-sampled   ours with head sampling at 10 % (OTEL_TELEMETRY_SAMPLING=0.1): 9 of 10 traces are
                 non-recording spans, counted sampled_out
  ours-levels    ours with OTEL_TELEMETRY_MIN_LEVEL=warning: every span but the failing ones is
                 below its level, dropped on the sender thread (no fast path), counted below_level
  ours-noreplay  ours without the replay buffer (OTEL_TELEMETRY_REPLAY_BUFFER=0): what keeping
                 sent messages until the collector acknowledges them costs
  ours-live      ours with spans in progress on (OTEL_TELEMETRY_LIVE_SPANS=true): every span start
                 is remembered for 0.1 s, and one still running then is announced to the collector
                 (``ours`` is the same with it off: the span start path of before, nothing of ours)
  ours-nice0     the same as ours with the collector at the app's CPU priority (`nice: 0` in its
                 config; by default the collector adds 10 to its niceness): shows how much of
                 ours' wall is the collector taking the app's core on a 2-core host

Definitions (the same for every variant that stores):

  app wall     monotonic time of the request loop only / requests (no import, setup or shutdown)
  app thread   CPU time of the app thread alone during the loop (time.thread_time); the rest
               of the wall is the app thread waiting: for the GIL (sender/worker threads) or
               for a core
  e2e window   from just before the first span starts until the first poll, made after the
               app's shutdown() returned, that finds the store holding every row it will hold
               (ours: ``sent`` rows; OTLP: the sink answers each Export only after committing,
               so its count is final once shutdown() returned). Polls every 10 ms.
  e2e stored/s rows stored / e2e window

Each repeat runs every variant once, in a rotated order; the table reports medians. The
machine is shared and noisy: read the ratios, which are taken within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import workloads  # noqa: E402  (bench/workloads.py)

ALL_VARIANTS = ("sdk-noop", "sdk-noop+hog", "bsp-noop", "bsp-otlp-grpc", "ours", "ours-py", "ours-app-redact",
                "ours-nice0", "ours-sampled", "ours-levels", "ours-noreplay", "ours-live")
DEFAULT_VARIANTS = ("sdk-noop", "bsp-noop", "bsp-otlp-grpc", "ours", "ours-app-redact")
CHILD_TIMEOUT = 180.0
POLL = 0.01


# ---------------------------------------------------------------------------------------------
# child: one producer
# ---------------------------------------------------------------------------------------------
def _attrs(i: int) -> dict:
    # 10 attributes, the same shape in every variant (str/int/bool/float mix, one varies per span).
    return {
        "http.request.method": "GET",
        "http.route": "/api/v1/items/{id}",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": 8080,
        "user.id": "u-12345",
        "request.seq": i,
        "cache.hit": True,
        "db.rows": 42,
        "latency.ms": 3.25,
    }


def _cpu() -> float:
    r = os.times()
    return r.user + r.system


def _runq_wait() -> int | None:
    """Nanoseconds this thread has spent runnable but waiting for a CPU (Linux schedstat), or None."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _switches() -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches of this thread so far (Linux), or None: a
    voluntary one is a wait (for the GIL, here), an involuntary one a preemption."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
            vals = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
        return int(vals["voluntary_ctxt_switches"]), int(vals["nonvoluntary_ctxt_switches"])
    except (OSError, ValueError, KeyError):
        return None


def _poll_until(read, target, timeout: float):
    """Poll ``read()`` every POLL s until it returns >= target (if given); (value, t_seen)."""
    end = time.monotonic() + timeout
    while True:
        v = read()
        now = time.monotonic()
        if target is None or v >= target or now >= end:
            return v, now
        time.sleep(POLL)


def child(args: argparse.Namespace) -> dict:
    import gc

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    variant, n = args.child, args.requests
    wl = workloads.make(args.workload, n)
    out: dict = {"variant": variant, "requests": n, "spans": workloads.total_spans(n, args.workload)}
    tel = None
    if variant == "ours":
        import otel_telemetry

        tel = otel_telemetry.configure("bench", endpoint=args.endpoint, metrics=False, logs=False,
                                       set_global=False)
        provider = tel.tracer_provider
        # the C fast path is this processor's on_end (span_plans.ender), else the Python one
        out["c_fast_path"] = "on_end" in vars(provider._active_span_processor)
    else:
        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        if variant == "bsp-noop":
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

            class Noop(SpanExporter):
                def export(self, spans):  # type: ignore[no-untyped-def]
                    return SpanExportResult.SUCCESS

            provider.add_span_processor(BatchSpanProcessor(Noop()))
        elif variant == "bsp-otlp-grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
        elif variant != "sdk-noop":
            raise SystemExit(f"unknown variant {variant}")
    tracer = provider.get_tracer("bench")
    run = wl.run
    if args.warmup:
        # Steady state before the timed loop (used by bench_instr.py, where callgrind starves the
        # sender thread): the shapes learnt, the collector joined, everything flushed.
        warm = workloads.make(args.workload, args.warmup, seed=99)
        for i in range(args.warmup):
            warm.run(tracer, i)
        if tel is not None:
            deadline = time.monotonic() + 120
            while not tel.transport.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            tel.force_flush(120)
        else:
            provider.force_flush()
    gc.collect()

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    q0, s0 = _runq_wait(), _switches()
    c0, t0, th0 = _cpu(), time.monotonic(), time.thread_time()
    for i in range(n):
        run(tracer, i)
    t1, c1, th1 = time.monotonic(), _cpu(), time.thread_time()
    q1, s1 = _runq_wait(), _switches()
    if q0 is not None and q1 is not None:
        out["app_thread_runq_us"] = (q1 - q0) / n / 1000
    if s0 is not None and s1 is not None:
        out["app_thread_waits"], out["app_thread_preempted"] = s1[0] - s0[0], s1[1] - s0[1]
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)

    if tel is not None:
        out["connected_at_loop_end"] = tel.transport.connected
        tel.shutdown(30)
    else:
        provider.shutdown()
    t2, c2 = time.monotonic(), _cpu()
    out.update(app_wall_us=(t1 - t0) / n * 1e6, app_cpu_loop_us=(c1 - c0) / n * 1e6,
               app_thread_cpu_us=(th1 - th0) / n * 1e6,
               app_cpu_total_us=(c2 - c0) / n * 1e6, shutdown_s=t2 - t1)

    if variant == "ours":
        import apsw

        counters = tel.counters()  # type: ignore[union-attr]
        out["emitted"], out["sent"] = counters["emitted"], counters["sent"]
        out["dropped"], out["queued"] = counters["dropped"], counters["queued"]

        def read_max() -> int:
            try:
                conn = apsw.Connection(args.db, flags=apsw.SQLITE_OPEN_READONLY)
            except apsw.Error:
                return 0
            try:  # max(id) is O(log n): cheap to poll while the collector writes
                return conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchall()[0][0]
            except apsw.Error:
                return 0
            finally:
                conn.close()

        seen, t3 = _poll_until(read_max, counters["sent"], args.store_timeout)
        conn = apsw.Connection(args.db, flags=apsw.SQLITE_OPEN_READONLY)
        out["stored_seen"] = conn.execute("SELECT count(*) FROM records WHERE type = 'span'").fetchall()[0][0]
        conn.close()
    elif variant == "bsp-otlp-grpc":
        import sqlite3

        def read_count() -> int:
            conn = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT count(*) FROM spans").fetchone()[0]
            finally:
                conn.close()

        seen, t3 = _poll_until(read_count, None, 0)
        out["emitted"] = out["spans"]
        out["stored_seen"] = seen
    else:
        t3 = None
    if t3 is not None:
        out["e2e_s"] = t3 - t0
        out["store_wait_s"] = t3 - t2
    return out


# ---------------------------------------------------------------------------------------------
# parent: receivers, subprocesses, table
# ---------------------------------------------------------------------------------------------
def _wait(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def _env() -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("OTEL_"):  # default settings everywhere: no stray env overrides
            del env[k]
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return None


def run_child(variant: str, args: argparse.Namespace, tmp: Path, extra: list[str],
              env: dict | None = None) -> dict:
    errf = tmp / f"{variant}.child.err"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, "--requests", str(args.requests),
           "--workload", args.workload, "--store-timeout", str(args.store_timeout), *extra]
    with open(errf, "wb") as err:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, env=_env() | (env or {}),
                           timeout=CHILD_TIMEOUT)
    if p.returncode != 0:
        raise RuntimeError(f"{variant} child failed rc={p.returncode}: {errf.read_text()[-2000:]}")
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def run_variant(variant: str, args: argparse.Namespace, profile: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as d:
        tmp = Path(d)
        extra = ["--profile", profile] if profile else []
        if variant in ("sdk-noop", "bsp-noop"):
            return run_child(variant, args, tmp, extra)
        if variant == "sdk-noop+hog":
            hog = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 120\n"
                                    "while time.monotonic() < end: pass"], env=_env())
            try:
                time.sleep(0.2)
                return run_child("sdk-noop", args, tmp, extra) | {"variant": variant}
            finally:
                hog.kill()
                hog.wait(10)
        if variant == "bsp-otlp-grpc":
            db, ready, count_file = tmp / "sink.db", tmp / "sink.port", tmp / "sink.count"
            sink = subprocess.Popen(
                [sys.executable, str(HERE / "otlp_sink.py"), "--db", str(db), "--ready", str(ready),
                 "--count-file", str(count_file)],
                stdout=subprocess.DEVNULL, stderr=open(tmp / "sink.err", "wb"), env=_env())
            try:
                _wait(lambda: ready.exists() or sink.poll() is not None, 30, "OTLP sink")
                if sink.poll() is not None:
                    raise RuntimeError((tmp / "sink.err").read_text())
                res = run_child(variant, args, tmp,
                                ["--endpoint", f"127.0.0.1:{ready.read_text().strip()}", "--db", str(db), *extra])
            finally:
                _stop(sink)
            final = json.loads(count_file.read_text()) if count_file.exists() else {}
            res["stored"] = final.get("stored", res["stored_seen"])
            res["dropped"] = {"not_delivered": res["emitted"] - final.get("received", res["stored_seen"])}
            return res
        if variant == "ours" or variant.startswith("ours-"):
            db, sock = tmp / "c.db", tmp / "c.ipc"
            cfg = []
            if variant == "ours-nice0":
                (tmp / "nice0.yaml").write_text("nice: 0\n")
                cfg = ["--config", str(tmp / "nice0.yaml")]
            col = subprocess.Popen(
                [sys.executable, "-m", "otel_telemetry", "collector", "run", *cfg, "--db", str(db),
                 "--endpoint", f"ipc://{sock}"],
                stdout=subprocess.DEVNULL, stderr=open(tmp / "collector.err", "wb"), env=_env())
            try:
                _wait(lambda: sock.exists() or col.poll() is not None, 30, "collector bind")
                if col.poll() is not None:
                    raise RuntimeError((tmp / "collector.err").read_text())
                env = {"ours-py": {"OTEL_TELEMETRY_SPEEDUPS": "0"},
                       "ours-app-redact": {"OTEL_TELEMETRY_REDACT_IN_APP": "always"},
                       "ours-sampled": {"OTEL_TELEMETRY_SAMPLING": "0.1"},
                       "ours-levels": {"OTEL_TELEMETRY_MIN_LEVEL": "warning"},
                       "ours-noreplay": {"OTEL_TELEMETRY_REPLAY_BUFFER": "0"},
                       "ours-live": {"OTEL_TELEMETRY_LIVE_SPANS": "true"}}.get(variant)
                res = run_child("ours", args, tmp, ["--endpoint", f"ipc://{sock}", "--db", str(db), *extra], env)
                res["variant"] = variant
            finally:
                rc = _stop(col)
            if rc != 0:  # e.g. it could not bind its OTLP ports: the run measured nothing useful
                raise RuntimeError(f"collector exited with {rc}: {(tmp / 'collector.err').read_text()[-2000:]}")
            import apsw

            conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
            res["stored"] = conn.execute("SELECT count(*) FROM records WHERE type = 'span'").fetchall()[0][0]
            conn.close()
            res["collector_rc"] = rc
            return res
        raise ValueError(variant)


def _med(rs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarise(results: dict[str, list[dict]]) -> dict:
    summ: dict = {}
    for v, rs in results.items():
        s = {k: _med(rs, k) for k in ("app_wall_us", "app_thread_cpu_us", "app_cpu_loop_us", "app_cpu_total_us",
                                        "shutdown_s", "e2e_s")}
        if rs and "stored" in rs[0]:
            for r in rs:
                r["pct_stored"] = 100.0 * r["stored"] / r["emitted"] if r["emitted"] else 0.0
                r["e2e_per_s"] = r["stored"] / r["e2e_s"] if r.get("e2e_s") else None
            s["stored"] = _med(rs, "stored")
            s["pct_stored"] = _med(rs, "pct_stored")
            s["pct_stored_min"] = min(r["pct_stored"] for r in rs)
            s["e2e_per_s"] = _med(rs, "e2e_per_s")
            drops: dict[str, list[int]] = {}
            for r in rs:
                for reason, c in (r.get("dropped") or {}).items():
                    drops.setdefault(reason, []).append(c)
            s["dropped_median"] = {k: statistics.median(vs + [0] * (len(rs) - len(vs))) for k, vs in drops.items()}
        summ[v] = s
    return summ


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def machine() -> dict:
    import importlib.metadata as md

    def ver(p: str) -> str:
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return "?"

    return {
        "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
        "python": platform.python_version(), "opentelemetry-sdk": ver("opentelemetry-sdk"),
        "grpcio": ver("grpcio"), "pyzmq": ver("pyzmq"), "loadavg": os.getloadavg(),
    }


def report(summ: dict, results: dict, args: argparse.Namespace, mach: dict) -> tuple[str, dict]:
    lines = []
    lines.append(f"machine: nproc={mach['nproc']} (affinity {mach['affinity']}), python {mach['python']}, "
                 f"opentelemetry-sdk {mach['opentelemetry-sdk']}, grpcio {mach['grpcio']}, pyzmq {mach['pyzmq']}, "
                 f"loadavg at start {mach['loadavg'][0]:.2f}")
    spans = workloads.total_spans(args.requests, args.workload)
    lines.append(f"workload {args.workload}: {args.requests} requests = {spans} spans, 1 app thread, "
                 f"median of {args.repeat} runs")
    lines.append("")
    lines.append("| variant | app wall µs/request | app thread CPU µs/request | app CPU µs/request (loop) "
                 "| app CPU µs/request (incl. shutdown) | shutdown s | stored | % stored | drops (median) "
                 "| e2e window s | e2e stored spans/s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for v in results:
        s = summ[v]
        drops = ", ".join(f"{k} {int(c)}" for k, c in (s.get("dropped_median") or {}).items() if c)
        drops = drops or ("0" if "stored" in s else "–")
        lines.append(
            f"| {v} | {_fmt(s['app_wall_us'], '.1f')} | {_fmt(s.get('app_thread_cpu_us'), '.1f')} | "
            f"{_fmt(s['app_cpu_loop_us'], '.1f')} | "
            f"{_fmt(s['app_cpu_total_us'], '.1f')} | {_fmt(s['shutdown_s'], '.2f')} | "
            f"{_fmt(s.get('stored'), '.0f')} | {_fmt(s.get('pct_stored'), '.2f')} | {drops} | "
            f"{_fmt(s.get('e2e_s'), '.2f')} | {_fmt(s.get('e2e_per_s'), ',.0f')} |")
    ratios: dict = {}
    lines.append("")
    if "ours" in summ and "sdk-noop" in summ:
        r = summ["ours"]["app_wall_us"] / summ["sdk-noop"]["app_wall_us"]
        pairs = zip(results["ours"], results["sdk-noop"], strict=False)
        paired = [o["app_wall_us"] / b["app_wall_us"] for o, b in pairs]
        ratios["app_wall_ours_over_sdk_noop"] = r
        target = 1.25 if args.workload == "realistic" else 1.20
        lines.append(f"ours app wall / sdk-noop = {r:.2f}  "
                     f"(target <= {target}: {'MET' if r <= target else 'MISSED'}); "
                     f"per repeat: {', '.join(f'{x:.2f}' for x in paired)}")
    for other in ("ours-py", "ours-app-redact", "ours-nice0", "ours-sampled", "ours-levels", "ours-noreplay",
                  "ours-live"):
        if other in summ and "sdk-noop" in summ:
            r = summ[other]["app_wall_us"] / summ["sdk-noop"]["app_wall_us"]
            paired = [o["app_wall_us"] / b["app_wall_us"]
                      for o, b in zip(results[other], results["sdk-noop"], strict=False)]
            ratios[f"app_wall_{other.replace('-', '_')}_over_sdk_noop"] = r
            lines.append(f"{other} app wall / sdk-noop = {r:.2f}; per repeat: {', '.join(f'{x:.2f}' for x in paired)}")
    if "ours-live" in summ and "ours" in summ:
        r = summ["ours-live"]["app_thread_cpu_us"] / summ["ours"]["app_thread_cpu_us"]
        paired = [o["app_thread_cpu_us"] / b["app_thread_cpu_us"]
                  for o, b in zip(results["ours-live"], results["ours"], strict=False)]
        ratios["app_thread_cpu_ours_live_over_ours"] = r
        lines.append(f"live spans on / off (ours-live / ours), app thread CPU = {r:.2f}; "
                     f"per repeat: {', '.join(f'{x:.2f}' for x in paired)}")
    if "ours" in results and not all(r.get("c_fast_path") for r in results["ours"]):
        lines.append("NOTE: ours ran without the C fast path (_fastspan not built?)")
    if "bsp-noop" in summ and "sdk-noop" in summ:
        r = summ["bsp-noop"]["app_wall_us"] / summ["sdk-noop"]["app_wall_us"]
        ratios["app_wall_bsp_noop_over_sdk_noop"] = r
        lines.append(f"(reference) bsp-noop app wall / sdk-noop = {r:.2f}")
    if "ours" in summ and "sdk-noop+hog" in summ:
        r = summ["ours"]["app_wall_us"] / summ["sdk-noop+hog"]["app_wall_us"]
        ratios["app_wall_ours_over_sdk_noop_hog"] = r
        hog = summ["sdk-noop+hog"]["app_wall_us"] / summ["sdk-noop"]["app_wall_us"] if "sdk-noop" in summ else None
        lines.append(f"(control) ours app wall / sdk-noop+hog = {r:.2f}; sdk-noop+hog / sdk-noop = {_fmt(hog, '.2f')}")
    if "ours" in summ and "bsp-otlp-grpc" in summ:
        a, b = summ["ours"].get("e2e_per_s"), summ["bsp-otlp-grpc"].get("e2e_per_s")
        if a and b:
            r = a / b
            pairs = zip(results["ours"], results["bsp-otlp-grpc"], strict=False)
            paired = [o["e2e_per_s"] / g["e2e_per_s"] for o, g in pairs]
            ratios["e2e_ours_over_bsp_otlp_grpc"] = r
            lines.append(f"ours e2e stored/s / bsp-otlp-grpc e2e/s = {r:.2f}  "
                         f"(target >= 3: {'MET' if r >= 3 else 'MISSED'}); "
                         f"per repeat: {', '.join(f'{x:.2f}' for x in paired)}")
    if "ours" in summ:
        p, pmin = summ["ours"]["pct_stored"], summ["ours"]["pct_stored_min"]
        ratios["ours_pct_stored"] = p
        ratios["ours_pct_stored_min"] = pmin
        lines.append(f"ours % stored = {p:.2f} % (min {pmin:.2f} %)  "
                     f"(target >= 99.9 %: {'MET' if pmin >= 99.9 else 'MISSED'})")
    return "\n".join(lines), ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="core pipeline benchmark (issues 2 and 13)")
    ap.add_argument("--workload", default="realistic",
                    help="realistic, constant, or both as a comma list (tables side by side, one run)")
    ap.add_argument("--requests", type=int, default=None,
                    help="requests per run (default 20000 realistic, 100000 constant)")
    ap.add_argument("--spans", type=int, default=None, help="old spelling of --requests")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help=f"comma list of {', '.join(ALL_VARIANTS)}")
    ap.add_argument("--json", default=None, help="save raw results and summary to FILE")
    ap.add_argument("--profile-dir", default=None,
                    help="after the timed runs, run each variant once more under cProfile (app thread loop) "
                         "and save VARIANT.prof here")
    ap.add_argument("--store-timeout", type=float, default=60.0, help="most seconds to wait for stored rows")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--db", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    chosen = [w.strip() for w in args.workload.split(",") if w.strip()]
    if not chosen or any(w not in workloads.WORKLOADS for w in chosen):
        ap.error(f"--workload: one or more of {', '.join(workloads.WORKLOADS)}")
    given = args.requests or args.spans

    if args.child:
        args.requests = given or (20_000 if args.workload == "realistic" else 100_000)
        print(json.dumps(child(args)))
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in ALL_VARIANTS:
            ap.error(f"unknown variant {v}")
    mach = machine()
    started = time.monotonic()
    saved: dict = {"argv": sys.argv, "machine": mach}
    for workload in chosen:
        args.workload = workload
        args.requests = given or (20_000 if workload == "realistic" else 100_000)
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.repeat):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                res = run_variant(v, args)
                results[v].append(res)
                extra = ""
                if "stored" in res:
                    extra = (f" stored={res['stored']}/{res['emitted']} e2e={res['e2e_s']:.2f}s "
                             f"drops={res.get('dropped')}")
                print(f"[{workload} {r + 1}/{args.repeat}] {v}: app wall {res['app_wall_us']:.1f} µs/request, "
                      f"app thread CPU {res['app_thread_cpu_us']:.1f}, process CPU {res['app_cpu_loop_us']:.1f}, "
                      f"shutdown {res['shutdown_s']:.2f}s{extra}", file=sys.stderr, flush=True)
        summ = summarise(results)
        text, ratios = report(summ, results, args, mach)
        print(f"\n## workload: {workload}\n")
        print(text)
        saved[workload] = {"results": results, "summary": summ, "ratios": ratios}
        if args.profile_dir:
            os.makedirs(args.profile_dir, exist_ok=True)
            for v in variants:
                path = os.path.join(os.path.abspath(args.profile_dir), f"{workload}-{v}.prof")
                run_variant(v, args, profile=path)
                print(f"profile: {path}", file=sys.stderr)
    print(f"\n(total bench time {time.monotonic() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(saved, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
