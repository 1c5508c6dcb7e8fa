"""An app with no collector in sight: its flushes give up after ``join_timeout`` instead of the
whole flush timeout, and it exits without waiting for one. The held records are not dropped by a
flush that gives up: a collector that comes later still gets them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import CollectorProc, wait_for

import otel_telemetry


def test_an_app_exits_without_a_collector_after_join_timeout_not_the_flush_timeouts(tmp_path: Path) -> None:
    """The SDK's providers flush at exit with 30 s each (logs, metrics, then traces):
    before, an app with nobody listening took a minute to exit. Now the first flush gives up after
    ``join_timeout`` and the shutdown does not wait again; every record is counted."""
    code = textwrap.dedent("""
        import atexit, json, sys, otel_telemetry
        from opentelemetry import metrics, trace
        holder = {}
        # Registered before configure(), so it runs after the providers' own exit handlers.
        atexit.register(lambda: print(json.dumps(holder["tel"].counters())))
        tel = holder["tel"] = otel_telemetry.configure("lonely", endpoint=sys.argv[1], join_timeout=0.5)
        trace.get_tracer("t").start_span("op").end()
        metrics.get_meter("m").create_counter("calls").add(1)
    """)
    proc = subprocess.run([sys.executable, "-c", code, f"ipc://{tmp_path}/nobody.ipc"], capture_output=True,
                          text=True, timeout=25)  # was 62 s: two providers' 30 s flushes
    assert proc.returncode == 0, proc.stderr
    counters = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counters["sent"] == 0 and counters["queued"] == 0
    assert counters["dropped"] == {"no_collector": counters["emitted"]} and counters["emitted"] == 2


def test_a_flush_that_gives_up_keeps_the_records_for_the_next_collector(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    tel = otel_telemetry.configure("later", endpoint=c.endpoint, metrics=False, logs=False, set_global=False,
                                   join_timeout=0.3)
    try:
        tracer = tel.tracer_provider.get_tracer("t")
        for i in range(5):
            tracer.start_span(f"op{i}").end()
        assert tel.force_flush(30) is False  # nobody listens: back after join_timeout, records held
        assert tel.counters()["dropped"] == {}
        c.start()
        wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == 5, timeout=30, what="held spans stored")
        assert tel.shutdown(10)
        assert tel.counters()["dropped"] == {} and tel.counters()["sent"] == 5
    finally:
        tel.shutdown(5)
        if c.proc is not None:
            c.stop()
