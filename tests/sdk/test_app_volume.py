"""Volume control in the app (issue 17 item 5, app side; 002 "Data Minimization"): a minimum level
per category and trace-consistent head sampling per category, each drop counted, so that
emitted == stored + Σ counted drops (below_level, sampled_out) holds exactly. Real app processes
send over ZeroMQ to a real collector process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import CollectorProc, wait_for

from otel_telemetry import settings
from otel_telemetry.sdk import volume

# Deterministic ids (trace ids spread over the 64-bit space so a 25 % rate keeps about a quarter).
IDS = r'''
from opentelemetry.sdk.trace.id_generator import IdGenerator
class Ids(IdGenerator):
    def __init__(self):
        self.n = 0
    def generate_span_id(self):
        self.n += 1
        return self.n
    def generate_trace_id(self):
        self.n += 1
        return (0x9E3779B97F4A7C15 * self.n) % (1 << 128) or 1
'''

# 200 traces: a SERVER root (user_interaction, sampled at 25 %) with an internal child and a client
# child (component_interactions), one log inside; every 10th trace's internal child fails
# (error_patterns). Then 300 spans of one shape in component_interactions (its minimum level is
# warning: below it, and the fast path must not let them through), AICO events at every level,
# logs at every severity and metrics in system_performance (minimum error).
APP = IDS + r'''
import json, logging, os
import otel_telemetry
from otel_telemetry.sdk.configure import configure
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.sdk.trace import TracerProvider

tel = configure("vol-app", min_level={"component_interactions": "warning", "system_performance": "error"},
                sampling={"user_interaction": 0.25}, sample_logs=os.environ.get("SAMPLE_LOGS") == "1")
tp = tel.tracer_provider
tp.id_generator = Ids()
tracer = tp.get_tracer("vol")
handler = otel_telemetry.logging_handler(tel)
applog = logging.getLogger("vol-app")
applog.addHandler(handler)
applog.setLevel(logging.DEBUG)
applog.propagate = False
traces = []
for i in range(200):
    with tracer.start_as_current_span("GET /items/{id}", kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "GET"}) as root:
        with tracer.start_as_current_span("load") as child:
            if i % 10 == 0:
                child.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("fetch", kind=SpanKind.CLIENT):
            pass
        applog.warning("in trace %d", i)
    traces.append("%032x" % root.get_span_context().trace_id)
for i in range(300):  # one shape, many times: the plan cache must not bypass the level
    tracer.start_span("tick", kind=SpanKind.INTERNAL).end()
for level in ("debug", "info", "warning", "error", "critical") * 4:
    otel_telemetry.record_telemetry("system_performance", "cpu", "sample", level=level, data={"cpu": 1})
for lvl in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR) * 5:
    applog.log(lvl, "outside any trace")
meter = tel.meter_provider.get_meter("vol")
meter.create_counter("system.cpu.ticks").add(5)
meter.create_counter("http.server.requests").add(7, {"route": "/items/{id}"})
ok = tel.shutdown(20)
print(json.dumps({"shutdown": ok, "counters": tel.counters(), "traces": traces}))
'''


def _run(code: str, endpoint: str, **env: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=180,
                          env={**os.environ, "OTEL_TELEMETRY_ENDPOINT": endpoint,
                               "OTEL_TELEMETRY_JOIN_TIMEOUT": "10", **env})
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _kept(trace_id: str, rate: float) -> bool:
    """OTel TraceIdRatioBased: the lower 64 bits of the trace id below rate × 2^64."""
    return int(trace_id[16:], 16) < round(rate * 2**64)


def _stored(c: CollectorProc) -> int:
    return c.rows("SELECT count(*) FROM records")[0][0]


@pytest.mark.parametrize("sample_logs", [False, True])
def test_levels_and_head_sampling_in_the_app_books_close(tmp_path: Path, sample_logs: bool) -> None:
    c = CollectorProc(tmp_path).start()
    try:
        out = _run(APP, c.endpoint, SAMPLE_LOGS="1" if sample_logs else "0")
        counters = out["counters"]
        assert out["shutdown"] and counters["queued"] == 0
        wait_for(lambda: _stored(c) == counters["sent"], what="every sent record stored")
    finally:
        assert c.stop() == 0
    # The books: emitted == stored + Σ counted drops, exactly, and only our two reasons.
    dropped = counters["dropped"]
    assert set(dropped) <= {"below_level", "sampled_out"}
    assert counters["emitted"] == _stored(c) + sum(dropped.values())

    kept = {t for t in out["traces"] if _kept(t, 0.25)}
    assert 20 < len(kept) < 80
    spans = dict(c.rows("SELECT trace_id, count(*) FROM records WHERE type = 'span' AND name = "
                        "'GET /items/{id}' GROUP BY trace_id"))
    assert set(spans) == kept  # roots: exactly the traces the rate keeps, by trace id
    # Trace-consistent: no span of a sampled-out trace is stored, whatever its category.
    stored_traces = {t for (t,) in c.rows("SELECT DISTINCT trace_id FROM records WHERE type = 'span' "
                                          "AND trace_id IS NOT NULL")}
    assert stored_traces <= kept
    # Children in component_interactions are below its level (info < warning) and dropped, even
    # in kept traces; failing ones (error_patterns, level error) are stored for kept traces only.
    by_name = dict(c.rows("SELECT name, count(*) FROM records WHERE type = 'span' GROUP BY name"))
    assert "fetch" not in by_name and "tick" not in by_name
    assert by_name["load"] == sum(1 for i, t in enumerate(out["traces"]) if i % 10 == 0 and t in kept)
    by_cat = counters["by_category"]
    sampled_roots = 200 - len(kept)
    # sampled_out spans are counted in the category they would have had (at start: no status yet).
    assert by_cat["user_interaction"]["dropped"]["sampled_out"] == sampled_roots
    # Two children per sampled-out trace, and its log when logs follow their trace.
    assert by_cat["component_interactions"]["dropped"]["sampled_out"] == \
        2 * sampled_roots + (sampled_roots if sample_logs else 0)
    # ... plus the debug and info logs outside any trace (logs file under component_interactions).
    assert by_cat["component_interactions"]["dropped"]["below_level"] == \
        len(kept) * 2 - by_name["load"] + 300 + 10
    # Events: below error dropped (debug, info, warning), never sampled; metrics are info: dropped
    # in system_performance, kept elsewhere.
    events = dict(c.rows("SELECT level, count(*) FROM records WHERE type = 'event' GROUP BY level"))
    assert events == {"error": 4, "critical": 4}
    metrics = {n for (n,) in c.rows("SELECT name FROM records WHERE type = 'metric'")}
    assert "http.server.requests" in metrics and "system.cpu.ticks" not in metrics
    # Logs: "in trace" warnings follow their trace only with sample_logs; the others are never
    # sampled (no trace).
    in_trace = c.rows("SELECT count(*) FROM records WHERE type = 'log' AND json_extract(data, '$.body') "
                      "LIKE 'in trace%'")[0][0]
    assert in_trace == (len(kept) if sample_logs else 200)
    outside = c.rows("SELECT count(*) FROM records WHERE type = 'log' AND json_extract(data, '$.body') "
                     "= 'outside any trace'")[0][0]
    assert outside == 10  # warning and error; debug and info are below component_interactions' level


REMOTE = IDS + r'''
import json
from otel_telemetry.sdk.configure import configure
from opentelemetry.trace import SpanKind
from opentelemetry.propagate import extract
tel = configure("downstream", metrics=False, logs=False, sampling={"*": 0.0})
tel.tracer_provider.id_generator = Ids()
tracer = tel.tracer_provider.get_tracer("remote")
for flags in ("01", "00"):
    carrier = {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{flags}"}
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER, context=extract(carrier)):
        tracer.start_span("inner").end()
tracer.start_span("own-root").end()
ok = tel.shutdown(15)
print(json.dumps({"shutdown": ok, "counters": tel.counters()}))
'''


def test_a_remote_parents_decision_wins_over_the_category_rate(tmp_path: Path) -> None:
    """Across processes a trace stays whole: the upstream's sampled flag (traceparent) decides."""
    c = CollectorProc(tmp_path).start()
    try:
        out = _run(REMOTE, c.endpoint)
        wait_for(lambda: _stored(c) == out["counters"]["sent"], what="sent records stored")
    finally:
        assert c.stop() == 0
    assert out["counters"]["sent"] == 2 and out["counters"]["dropped"] == {"sampled_out": 3}
    assert sorted(n for (n,) in c.rows("SELECT name FROM records")) == ["handle", "inner"]


ZERO_CODE = r'''
import json
from opentelemetry.sdk._configuration import _import_sampler
from opentelemetry.sdk.trace import TracerProvider
from otel_telemetry.sdk.volume import CategorySampler
from otel_telemetry.sdk.exporter import ZmqSpanProcessor
sampler = _import_sampler("otel_telemetry")  # what OTEL_TRACES_SAMPLER=otel_telemetry loads
assert isinstance(sampler, CategorySampler), sampler
tp = TracerProvider(sampler=sampler)
tracer = tp.get_tracer("zc")
tracer.start_span("before-exporter").end()  # counted once the transport exists
proc = ZmqSpanProcessor()
tp.add_span_processor(proc)
for i in range(50):
    tracer.start_span(f"op{i % 3}").end()
proc.transport.force_flush(10)
print(json.dumps({"counters": proc.transport.counters(), "description": sampler.get_description()}))
proc.shutdown()
'''


def test_the_sampler_entry_point_for_zero_code_instrumentation(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path).start()
    try:
        out = _run(ZERO_CODE, c.endpoint, OTEL_TRACES_SAMPLER_ARG="component_interactions=0")
        wait_for(lambda: _stored(c) == out["counters"]["sent"], what="sent records stored")
    finally:
        assert c.stop() == 0
    assert out["counters"]["sent"] == 0
    assert out["counters"]["dropped"] == {"sampled_out": 51}
    assert out["description"] == "OtelTelemetryCategorySampler{component_interactions=0}"


def test_an_env_sampler_decides_first_and_its_drops_are_counted(tmp_path: Path) -> None:
    code = IDS + r'''
import json
from otel_telemetry.sdk.configure import configure
tel = configure("env", metrics=False, logs=False, sampling={"ai_research": 0.5})
tracer = tel.tracer_provider.get_tracer("env")
for i in range(20):
    tracer.start_span("x").end()
tel.shutdown(10)
print(json.dumps({"counters": tel.counters()}))
'''
    c = CollectorProc(tmp_path).start()
    try:
        out = _run(code, c.endpoint, OTEL_TRACES_SAMPLER="always_off")
    finally:
        assert c.stop() == 0
    assert out["counters"]["sent"] == 0 and out["counters"]["dropped"] == {"sampled_out": 20}


def test_settings_parse_and_bad_values_name_the_setting() -> None:
    assert settings.resolve("min_level", "Warning") == {"*": "warning"}
    assert settings.resolve("sampling", "user_interaction=0.1, *=1") == {"user_interaction": 0.1, "*": 1.0}
    v = volume.resolve({"*": "info", "error_patterns": "debug"}, {"ai_research": 0})
    assert v.min_rank["error_patterns"] == 0 and v.min_rank["ai_behavior"] == 1
    assert v.rates["ai_research"] == 0.0 and v.rates["user_interaction"] == 1.0 and v.sampling_on
    assert not volume.resolve().levels_on and not volume.resolve().sampling_on
    for name, bad, why in (("min_level", "loud", "expected one of"), ("sampling", "1.5", "from 0 to 1"),
                           ("sampling", "users=0.5", "unknown category 'users'"),
                           ("sampling", "nan", "from 0 to 1"), ("sample_logs", "maybe", "true or false")):
        with pytest.raises(ValueError, match=f"setting '{name}'.*{why}"):
            settings.resolve(name, bad)
    os.environ["OTEL_TELEMETRY_SAMPLING"] = "ai_behavior=2"
    try:
        with pytest.raises(ValueError, match="OTEL_TELEMETRY_SAMPLING"):
            volume.resolve()
    finally:
        del os.environ["OTEL_TELEMETRY_SAMPLING"]


def test_the_sampler_never_raises_into_the_app() -> None:
    counted: list[tuple[str, str]] = []
    s = volume.CategorySampler(volume.resolve(sampling={"*": 0.0}), count=lambda c, r: counted.append((c, r)))

    class Weird(dict):  # attributes whose lookups raise: the span is kept, nothing raised
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("boom")

    r = s.should_sample(None, 123, "x", None, Weird(a=1))
    assert r.decision.is_sampled() and counted == []
    r = s.should_sample(None, 123, "x")
    assert not r.decision.is_recording() and counted == [("component_interactions", "sampled_out")]
