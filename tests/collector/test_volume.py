"""Volume control in the collector (issue 17 item 5; 002 "Data Minimization": verbosity levels and
sampling for high-volume data): ``volume.min_level`` and ``volume.tail_sampling`` in a real
collector process fed by a real app process over ZeroMQ. The books close exactly:
emitted == stored + below_level + tail_sampled_out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CollectorProc, wait_for

from otel_telemetry.collector.config import ConfigError, load

VOLUME = {
    "min_level": {"system_performance": "warning"},
    # Long enough that a trace's spans (sent in one message per topic) all arrive before its
    # decision even on a loaded machine; the test waits for the outcome, not for this time.
    "tail_sampling": {"decision_wait": 2, "latency_threshold_ms": 1000, "sampling_percentage": 25},
}

# 100 traces of 3 spans with deterministic ids and clocks: every 5th has an error, a slow root
# (2 s by its own timestamps), a GenAI child, or nothing special (2 of 5). Plus AICO events at
# every level in system_performance, whose minimum level is warning.
APP = r'''
import json, sys
import otel_telemetry
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import Status, StatusCode

class Ids(IdGenerator):
    def __init__(self):
        self.n = 0
    def generate_span_id(self):
        self.n += 1
        return self.n
    def generate_trace_id(self):
        self.n += 1
        return (0x9E3779B97F4A7C15 * self.n) % (1 << 128) or 1

tp = TracerProvider(resource=Resource.create({"service.name": "volume-app"}), id_generator=Ids())
tel = otel_telemetry.configure(tracer_provider=tp, metrics=False, logs=False, set_global=False)
tracer = tp.get_tracer("volume")
T0 = 1_800_000_000_000_000_000
traces = []
for i in range(100):
    kind = ("error", "latency", "genai", "plain", "plain")[i % 5]
    t = T0 + i * 10_000_000_000
    root = tracer.start_span("handle", start_time=t)
    ctx = __import__("opentelemetry.trace", fromlist=["set_span_in_context"]).set_span_in_context(root)
    a = tracer.start_span("step-a", context=ctx, start_time=t + 1_000_000)
    if kind == "error":
        a.set_status(Status(StatusCode.ERROR, "boom"))
    a.end(end_time=t + 2_000_000)
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"} if kind == "genai" else {}
    b = tracer.start_span("step-b", context=ctx, start_time=t + 3_000_000, attributes=attrs)
    b.end(end_time=t + 4_000_000)
    root.end(end_time=t + (2_000_000_000 if kind == "latency" else 5_000_000))
    traces.append(["%032x" % root.get_span_context().trace_id, kind])
for level in ("debug", "info", "warning", "error") * 5:
    otel_telemetry.record_telemetry("system_performance", "cpu", "sample", level=level, data={"cpu": 1})
ok = tel.shutdown(15)
print(json.dumps({"shutdown": ok, "counters": tel.counters(), "traces": traces}))
'''


def _collector(tmp: Path, volume: dict[str, Any]) -> CollectorProc:
    c = CollectorProc(tmp)
    cfg = yaml.safe_load(c.config.read_text())
    cfg["volume"] = volume
    c.config.write_text(yaml.safe_dump(cfg))
    return c.start()


def _app(endpoint: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(APP)], capture_output=True, timeout=120,
                          env={**os.environ, "OTEL_TELEMETRY_ENDPOINT": endpoint,
                               "OTEL_TELEMETRY_JOIN_TIMEOUT": "10"})
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _sampled(trace_id: str, percentage: float) -> bool:
    """OTel TraceIdRatioBased: the lower 64 bits of the trace id below ratio × 2^64."""
    return int(trace_id[16:], 16) < round(percentage / 100 * 2**64)


def test_min_level_and_tail_sampling_books_close_exactly(tmp_path: Path) -> None:
    c = _collector(tmp_path, VOLUME)
    try:
        out = _app(c.endpoint)
        assert out["shutdown"] and out["counters"]["dropped"] == {}
        kinds = dict(out["traces"])
        expected = {t for t, k in kinds.items() if k != "plain" or _sampled(t, 25)}
        assert 0 < len(expected - {t for t, k in kinds.items() if k != "plain"}) < 40  # some plain kept
        wait_for(lambda: c.rows("SELECT count(DISTINCT trace_id) FROM records WHERE type = 'span'")[0][0]
                 == len(expected), what="kept traces stored")
    finally:
        assert c.stop() == 0
    spans = c.rows("SELECT trace_id, count(*) FROM records WHERE type = 'span' GROUP BY trace_id")
    assert {t for t, _ in spans} == expected
    assert all(n == 3 for _, n in spans)  # whole traces, never parts
    events = c.rows("SELECT level, count(*) FROM records WHERE type = 'event' GROUP BY level")
    assert dict(events) == {"warning": 5, "error": 5}
    vol = c.status()["volume"]
    assert vol["dropped"]["below_level"] == {"system_performance": 10}
    ts = vol["tail_sampling"]
    assert ts["traces_kept"] == {"error": 20, "latency": 20, "genai": 20,
                                 "sampled": len(expected) - 60}
    assert ts["traces_dropped"] == 100 - len(expected)
    assert ts["held"] == ts["held_traces"] == ts["waiting_for_store"] == 0
    assert vol["dropped"]["tail_sampled_out"] and not ts["undelivered"]
    # The books, per category: everything the app emitted is stored or counted.
    stored = c.counts_by_category()
    emitted = out["counters"]["by_category"]
    for cat, counts in emitted.items():
        dropped = vol["dropped"]["below_level"].get(cat, 0) + vol["dropped"]["tail_sampled_out"].get(cat, 0)
        assert counts["emitted"] == stored.get(cat, 0) + dropped, (cat, counts, stored, vol)
    assert sum(c["emitted"] for c in emitted.values()) == 320


def test_shutdown_decides_held_traces_at_once(tmp_path: Path) -> None:
    """A long decision_wait: SIGTERM still decides and stores every kept trace (none lost)."""
    c = _collector(tmp_path, {"tail_sampling": {"decision_wait": 600, "sampling_percentage": 0}})
    out = _app(c.endpoint)
    wait_for(lambda: c.status().get("volume", {}).get("tail_sampling", {}).get("held") == 300,
             what="all spans held")
    assert c.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0] == 0
    assert c.stop() == 0
    vol = c.status()["volume"]
    assert vol["tail_sampling"]["traces_kept"] == {"error": 20, "latency": 0, "genai": 20, "sampled": 0}
    assert c.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0] == 40 * 3
    assert sum(vol["dropped"]["tail_sampled_out"].values()) == 60 * 3
    assert out["counters"]["dropped"] == {}


def test_bounded_memory_decides_the_oldest_trace_early(tmp_path: Path) -> None:
    """num_traces: 10 — every new trace beyond ten decides the oldest at once. Which traces are kept
    then depends on arrival order (a trace may be decided before its error span arrives; the late
    span follows the decision), but every decision and every span is still counted."""
    c = _collector(tmp_path, {"tail_sampling": {"decision_wait": 600, "num_traces": 10, "sampling_percentage": 0}})
    out = _app(c.endpoint)
    wait_for(lambda: c.status().get("volume", {}).get("tail_sampling", {}).get("early_decisions") == 90,
             what="90 early decisions")
    assert c.status()["volume"]["tail_sampling"]["held_traces"] == 10
    assert c.stop() == 0
    ts = c.status()["volume"]["tail_sampling"]
    assert ts["early_decisions"] == 90 and ts["held"] == 0
    assert sum(ts["traces_kept"].values()) + ts["traces_dropped"] == 100
    stored = c.rows("SELECT count(*) FROM records WHERE type = 'span'")[0][0]
    sampled_out = sum(c.status()["volume"]["dropped"]["tail_sampled_out"].values())
    assert stored + sampled_out == 300 and stored == ts["spans_kept"]
    assert out["counters"]["dropped"] == {}


def test_otlp_input_levels_and_tail_sampling(tmp_path: Path) -> None:
    """OTLP/HTTP from the official exporters: accepted == stored + below_level; kept traces arrive
    after their decision, whole."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    c = _collector(tmp_path, {"min_level": {"system_performance": "warning", "component_interactions": "warning"},
                              "tail_sampling": {"decision_wait": 0.2, "sampling_percentage": 100}})
    try:
        wait_for(lambda: "otlp_http" in c.status(), what="OTLP/HTTP up")
        base = f"http://{c.status()['otlp_http']['endpoint']}"
        resource = Resource.create({"service.name": "otlp-volume"})
        spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(SimpleSpanProcessor(spans))
        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
        mp = MeterProvider(resource=resource, metric_readers=[reader])
        tracer, logger = tp.get_tracer("lib"), lp.get_logger("lib")
        counter = mp.get_meter("lib").create_counter("requests")
        for i in range(5):
            with tracer.start_as_current_span(f"root-{i}"), tracer.start_as_current_span(f"child-{i}"):
                logger.emit(body=f"log {i}", severity_number=SeverityNumber.WARN if i % 2 else SeverityNumber.INFO)
            counter.add(1, {"route": f"/r{i}"})
        assert OTLPSpanExporter(endpoint=f"{base}/v1/traces").export(spans.get_finished_spans()).name == "SUCCESS"
        assert OTLPLogExporter(endpoint=f"{base}/v1/logs").export(logs.get_finished_logs()).name == "SUCCESS"
        assert OTLPMetricExporter(endpoint=f"{base}/v1/metrics").export(reader.get_metrics_data()).name == "SUCCESS"
        # Spans are info level in component_interactions: below its minimum, so none is held.
        wait_for(lambda: c.status().get("volume", {}).get("dropped", {}).get("below_level", {}).get(
            "component_interactions") == 10 + 3, what="below-level drops counted")
    finally:
        assert c.stop() == 0
    s = c.status()
    accepted = s["otlp_http"]["accepted"]
    below = s["volume"]["dropped"]["below_level"]
    assert accepted == 10 + 5 + 5
    assert below == {"component_interactions": 13, "system_performance": 5}
    assert dict(c.rows("SELECT type, count(*) FROM records GROUP BY type")) == {"log": 2}
    assert accepted == sum(c.counts_by_category().values()) + sum(below.values())


def test_otlp_tail_sampling_keeps_whole_traces(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    c = _collector(tmp_path, {"tail_sampling": {"decision_wait": 0.2, "sampling_percentage": 0}})
    try:
        wait_for(lambda: "otlp_http" in c.status(), what="OTLP/HTTP up")
        base = f"http://{c.status()['otlp_http']['endpoint']}"
        spans = InMemorySpanExporter()
        tp = TracerProvider(resource=Resource.create({"service.name": "otlp-tail"}))
        tp.add_span_processor(SimpleSpanProcessor(spans))
        tracer = tp.get_tracer("lib")
        for i in range(6):
            with tracer.start_as_current_span(f"root-{i}"), tracer.start_as_current_span(f"child-{i}") as child:
                if i % 3 == 0:
                    child.set_status(Status(StatusCode.ERROR, "boom"))
        finished = spans.get_finished_spans()
        assert OTLPSpanExporter(endpoint=f"{base}/v1/traces").export(finished).name == "SUCCESS"
        errors = {f"{s.context.trace_id:032x}" for s in finished if s.status.status_code == StatusCode.ERROR}
        wait_for(lambda: c.status().get("volume", {}).get("tail_sampling", {}).get("traces_dropped") == 4,
                 what="6 traces decided")
    finally:
        assert c.stop() == 0
    stored = c.rows("SELECT trace_id, count(*) FROM records GROUP BY trace_id")
    assert {t for t, _ in stored} == errors and all(n == 2 for _, n in stored)
    assert c.status()["volume"]["dropped"]["tail_sampled_out"] == {"component_interactions": 8}


@pytest.mark.parametrize(("volume", "message"), [
    ({"min_level": {"system_performance": "loud"}}, "volume.min_level.system_performance"),
    ({"min_level": {"bogus": "info"}}, "unknown key 'bogus'"),
    ({"tail_sampling": {"sampling_percent": 5}}, "unknown key 'sampling_percent'"),
    ({"tail_sampling": {"sampling_percentage": 150}}, "sampling_percentage: at most 100"),
    ({"tail_sampling": {"decision_wait": 0}}, "decision_wait"),
    ({"tail_sampling": {"keep_errors": "yes"}}, "keep_errors: expected true or false"),
    ({"levels": {}}, "unknown key 'levels'"),
])
def test_bad_volume_config_is_one_clear_error(tmp_path: Path, volume: dict[str, Any], message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"volume": volume}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load(str(path), db=str(tmp_path / "x.db"), endpoint="ipc://@x")
    res = subprocess.run([sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(path),
                          "--db", str(tmp_path / "x.db"), "--endpoint", f"ipc://{tmp_path}/x.ipc"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message.split("'")[0] in res.stderr


def test_tail_sampling_off_when_disabled(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"volume": {"tail_sampling": {"enabled": False}}}))
    cfg = load(str(path), db=str(tmp_path / "x.db"), endpoint="ipc://@x")
    assert cfg.volume.tail_sampling is None and not cfg.volume.active
