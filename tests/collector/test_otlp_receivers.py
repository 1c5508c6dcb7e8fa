"""OTLP/HTTP and OTLP/gRPC receivers: official OTel exporters in, rows out, exactly once.

Real sockets on 127.0.0.1 (port 0), real SQLite files, a real collector process for the exporter
and gzip-bomb tests; a real lock on the database (BEGIN EXCLUSIVE from another connection) makes
the store slow for the overload test.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import grpc
import pytest
from conftest import CollectorProc, wait_for
from google.rpc import status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_telemetry.collector.config import ConfigError, load
from otel_telemetry.collector.pipeline import Pipeline
from otel_telemetry.collector.receivers.otlp_grpc import OtlpGrpcReceiver
from otel_telemetry.collector.receivers.otlp_http import OtlpHttpReceiver
from otel_telemetry.collector.service import Collector
from otel_telemetry.store.writer import StoreWriter

DATA = Path(__file__).parents[1] / "data" / "otlp"
MIB = 1024 * 1024
PB, JS = "application/x-protobuf", "application/json"


# -- helpers ---------------------------------------------------------------------------------------

def post(port: int, path: str, body: bytes, ctype: str = PB, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype, **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def rows(db: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def span_request(service: str, n: int, *, bad: int | None = None, attr: str = "") -> ExportTraceServiceRequest:
    """n spans with fresh random ids; span ``bad`` gets a 15-byte trace id."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    for i in range(n):
        sp = ss.spans.add(name=f"op-{i}", trace_id=os.urandom(15 if i == bad else 16), span_id=os.urandom(8),
                          start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 1000)
        if attr:
            sp.attributes.append(KeyValue(key="blob", value=AnyValue(string_value=attr)))
    return req


def span_ids(db: str, service: str) -> list[tuple[str, str]]:
    return rows(db, "SELECT trace_id, span_id FROM records WHERE service = ? AND type = 'span'", (service,))


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[Collector]:
    """An in-process collector with both OTLP receivers on free ports and no ZeroMQ receiver."""
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("store: {flush_interval: 0.02}\nreceivers:\n  zmq: {enabled: false}\n"
                        "  otlp_http: {endpoint: '127.0.0.1:0', max_body_bytes: 1048576}\n"
                        "  otlp_grpc: {endpoint: '127.0.0.1:0', max_body_bytes: 1048576}\n")
    c = Collector(load(str(cfg_path), db=str(tmp_path / "c.db"), endpoint=f"ipc://{tmp_path}/c.ipc"))
    c.start()
    yield c
    assert c.shutdown(10)


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProc]:
    """One real collector process for the module, OTLP receivers on port 0 with a 1 MiB cap."""
    c = CollectorProc(tmp_path_factory.mktemp("otlp"))
    c.config.write_text("store: {flush_interval: 0.02}\nreceivers:\n"
                        "  otlp_http: {endpoint: '127.0.0.1:0', max_body_bytes: 1048576}\n"
                        "  otlp_grpc: {endpoint: '127.0.0.1:0', max_body_bytes: 1048576}\n")
    c.start()
    wait_for(lambda: "otlp_grpc" in c.status(), what="status with OTLP endpoints")
    yield c
    if c.proc is not None:
        assert c.stop() == 0, c.log.read_text()


def ports(c: CollectorProc) -> tuple[int, int]:
    s = c.status()
    return int(s["otlp_http"]["endpoint"].rsplit(":", 1)[1]), int(s["otlp_grpc"]["endpoint"].rsplit(":", 1)[1])


# -- official exporters against the collector process ----------------------------------------------

def _sdk_data(tag: str) -> tuple[Any, Any, list[Any]]:
    """Spans, metrics and log records made by the SDK, with a service name of their own."""
    resource = Resource.create({"service.name": f"svc-{tag}"})
    spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    tracer, logger, meter = tp.get_tracer(f"lib-{tag}"), lp.get_logger(f"lib-{tag}"), mp.get_meter(f"lib-{tag}")
    counter = meter.create_counter(f"{tag}.requests")
    hist = meter.create_histogram(f"{tag}.latency", unit="ms")
    for i in range(5):
        with tracer.start_as_current_span(f"{tag}-root-{i}"):
            with tracer.start_as_current_span(f"{tag}-child-{i}"):
                logger.emit(body=f"{tag} log {i}", severity_number=SeverityNumber.WARN, attributes={"i": i})
        counter.add(i + 1, {"route": f"/r{i % 2}"})
        hist.record(10.0 * i, {"route": f"/r{i % 2}"})
    return spans.get_finished_spans(), reader.get_metrics_data(), logs.get_finished_logs()


def _check_stored(db: str, tag: str, spans: Any, metrics: Any, logs: list[Any]) -> None:
    svc = f"svc-{tag}"
    stored = rows(db, "SELECT trace_id, span_id, parent_span_id, name FROM records WHERE service=? AND type='span'",
                  (svc,))
    expect = [(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}",
               f"{s.parent.span_id:016x}" if s.parent else None, s.name) for s in spans]
    assert sorted(stored) == sorted(expect) and len(stored) == 10
    points = sum(len(m.data.data_points) for rm in metrics.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics)
    got = rows(db, "SELECT name, count(*) FROM records WHERE service=? AND type='metric' GROUP BY name", (svc,))
    assert sum(n for _, n in got) == points == 4 and {n for n, _ in got} == {f"{tag}.requests", f"{tag}.latency"}
    stored_logs = rows(db, "SELECT trace_id, span_id, level, data FROM records WHERE service=? AND type='log'",
                       (svc,))
    expect_logs = sorted((f"{r.log_record.trace_id:032x}", f"{r.log_record.span_id:016x}", "warning",
                          r.log_record.body) for r in logs)
    assert sorted((t, s, lv, json.loads(d)["body"]) for t, s, lv, d in stored_logs) == expect_logs
    assert len(expect_logs) == 5


def test_official_exporters_http_and_grpc_to_collector_process(proc: CollectorProc) -> None:
    http_port, grpc_port = ports(proc)
    # The module's collector may have taken other tests' requests first (two workers run a
    # module's tests in any order): the counters are compared as differences, from a status row
    # written after those requests.
    t0 = time.time_ns()
    wait_for(lambda: proc.rows("SELECT updated FROM collector_status WHERE id = 1")[0][0] > t0,
             what="a status row newer than the other tests' requests")
    s0 = proc.status()

    def accepted(status: dict[str, Any], receiver: str) -> dict[str, int]:
        return dict((status.get(receiver) or {}).get("accepted_by_signal") or {})

    def grew(receiver: str) -> dict[str, int]:
        before, now = accepted(s0, receiver), accepted(proc.status(), receiver)
        return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}
    base = f"http://127.0.0.1:{http_port}"
    sent = {}
    for tag, gz in (("http", False), ("httpgz", True)):
        spans, metrics, logs = sent[tag] = _sdk_data(tag)
        comp = Compression.Gzip if gz else Compression.NoCompression
        assert HttpSpanExporter(endpoint=f"{base}/v1/traces", compression=comp).export(spans).name == "SUCCESS"
        assert HttpMetricExporter(endpoint=f"{base}/v1/metrics", compression=comp).export(metrics).name == "SUCCESS"
        assert HttpLogExporter(endpoint=f"{base}/v1/logs", compression=comp).export(logs).name == "SUCCESS"
    for tag, gz in (("grpc", False), ("grpcgz", True)):
        spans, metrics, logs = sent[tag] = _sdk_data(tag)
        kw: dict[str, Any] = {"endpoint": f"127.0.0.1:{grpc_port}", "insecure": True,
                              "compression": grpc.Compression.Gzip if gz else grpc.Compression.NoCompression}
        assert GrpcSpanExporter(**kw).export(spans).name == "SUCCESS"
        assert GrpcMetricExporter(**kw).export(metrics).name == "SUCCESS"
        assert GrpcLogExporter(**kw).export(logs).name == "SUCCESS"
    # Acknowledged means committed: readable right away, no waiting.
    for tag, (spans, metrics, logs) in sent.items():
        _check_stored(proc.db, tag, spans, metrics, logs)
    # Re-sending the same data stores nothing twice.
    spans, metrics, logs = sent["grpc"]
    assert HttpSpanExporter(endpoint=f"{base}/v1/traces").export(spans).name == "SUCCESS"
    assert HttpLogExporter(endpoint=f"{base}/v1/logs").export(logs).name == "SUCCESS"
    _check_stored(proc.db, "grpc", spans, metrics, logs)
    wait_for(lambda: grew("otlp_grpc").get("traces", 0) >= 20 and grew("otlp_http").get("logs", 0) >= 15,
             what="status counters")
    assert grew("otlp_http") == {"traces": 30, "metrics": 8, "logs": 15}
    assert grew("otlp_grpc") == {"traces": 20, "metrics": 8, "logs": 10}


def _vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def _gzip_zeros(n: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(MIB)
    return b"".join([z.compress(chunk) for _ in range(n // MIB)] + [z.flush()])


def test_gzip_bomb_and_oversize_against_collector_process(proc: CollectorProc) -> None:
    http_port, grpc_port = ports(proc)
    assert proc.proc is not None
    bomb = _gzip_zeros(100 * MIB)  # 100 MiB of zeros in ~100 KiB
    assert len(bomb) < 200 * 1024
    peak_before = _vm_kib(proc.proc.pid, "VmHWM")
    for _ in range(3):
        status, _, body = post(http_port, "/v1/traces", bomb, PB, **{"Content-Encoding": "gzip"})
        assert status == 413
        assert status_pb2.Status.FromString(body).code == 8  # RESOURCE_EXHAUSTED
    growth_mib = (_vm_kib(proc.proc.pid, "VmHWM") - peak_before) / 1024
    assert growth_mib < 24, f"collector peak RSS grew by {growth_mib:.1f} MiB for a 1 MiB cap"
    # Declared too large: refused before the body is read (none is sent at all here).
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    conn.putrequest("POST", "/v1/logs")
    conn.putheader("Content-Type", JS)
    conn.putheader("Content-Length", str(50 * MIB))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["code"] == 8
    conn.close()
    # gRPC: over the cap as sent, and over the cap only after decompression.
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        for comp in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(span_request("big", 1, attr="x" * (2 * MIB)), timeout=10, compression=comp)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rows(proc.db, "SELECT count(*) FROM records WHERE service = 'big'") == [(0,)]
    # Still healthy afterwards.
    assert post(http_port, "/v1/traces", span_request("after-bomb", 2).SerializeToString())[0] == 200
    assert len(span_ids(proc.db, "after-bomb")) == 2


# -- in-process: OTLP/JSON files, errors, partial success ------------------------------------------

def _walk(doc: dict[str, Any], rk: str, sk: str, ik: str) -> Iterator[dict[str, Any]]:
    for r in doc.get(rk, []):
        for s in r.get(sk, []):
            yield from s.get(ik, [])


def test_otlp_json_files_stored_once(inproc: Collector) -> None:
    port, db = inproc.otlp_http.port, inproc.cfg.db
    trace_files = ["trace.json", "jaeger-example_trace.json", "jaeger-otlp2jaeger-in.json",
                   "jaeger-ui-error-span.json", "jaeger-ui-multi-resource.json", "collector-contrib-empty-ids.json"]
    expect_ids: set[tuple[str | None, str | None]] = set()
    no_id = 0
    for name in trace_files:
        doc = json.loads((DATA / name).read_text())
        for sp in _walk(doc, "resourceSpans", "scopeSpans", "spans"):
            if sp.get("traceId") and sp.get("spanId"):
                expect_ids.add((sp["traceId"].lower(), sp["spanId"].lower()))
            else:
                no_id += 1
    points = sum(len(d.get("dataPoints", [])) for m in _walk(json.loads((DATA / "metrics.json").read_text()),
                                                              "resourceMetrics", "scopeMetrics", "metrics")
                 for k, d in m.items() if isinstance(d, dict) and k != "metadata")
    n_logs = sum(1 for f in ("logs.json", "events.json")
                 for _ in _walk(json.loads((DATA / f).read_text()), "resourceLogs", "scopeLogs", "logRecords"))
    bodies = [("/v1/traces", (DATA / f).read_bytes()) for f in trace_files]
    bodies += [("/v1/metrics", (DATA / "metrics.json").read_bytes())]
    bodies += [("/v1/logs", (DATA / f).read_bytes()) for f in ("logs.json", "events.json")]
    for attempt in range(2):  # the second round is a client retry: nothing new may be stored
        for i, (path, body) in enumerate(bodies):
            gz = (i + attempt) % 2 == 1  # some plain, some gzip
            status, headers, resp = post(port, path, gzip.compress(body) if gz else body, JS,
                                         **({"Content-Encoding": "gzip"} if gz else {}))
            assert status == 200 and headers["content-type"] == JS, resp
            assert "partialSuccess" not in json.loads(resp), (path, resp)
        spans = rows(db, "SELECT trace_id, span_id FROM records WHERE type IN ('span', 'event')")
        assert {s for s in spans if s[0] and s[1]} == expect_ids
        assert len(spans) == len(expect_ids) + no_id
        assert rows(db, "SELECT count(*) FROM records WHERE type='metric'") == [(points,)]
        assert rows(db, "SELECT count(*) FROM records WHERE type='log'") == [(n_logs,)]
    assert points > 0 and n_logs > 0 and no_id > 0
    # The official protobuf example goes the same way.
    status, _, _ = post(port, "/v1/traces", (DATA / "trace.protobuf-bin").read_bytes(), PB)
    assert status == 200


def test_http_error_answers(inproc: Collector) -> None:
    port = inproc.otlp_http.port
    status, h, body = post(port, "/v1/traces", b"\xff\xfe garbage \x00" * 10, PB)
    assert status == 400 and h["content-type"] == PB and status_pb2.Status.FromString(body).code == 3
    for bad in (b"{not json", b"[]", b'{"resourceSpans": 5}', b'{"resourceSpans": [{"scopeSpans": 3}]}'):
        status, h, body = post(port, "/v1/traces", bad, JS)
        assert status == 400 and json.loads(body)["code"] == 3, bad
    assert post(port, "/v1/logs", b"not gzip", PB, **{"Content-Encoding": "gzip"})[0] == 400
    assert post(port, "/v1/logs", b"{}", "text/plain")[0] == 415
    assert post(port, "/v1/logs", b"{}", JS, **{"Content-Encoding": "br"})[0] == 415
    assert post(port, "/v1/spans", b"{}", JS)[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/traces")
    resp = conn.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    resp.read()
    conn.request("POST", "/v1/traces", body=b"", headers={"Content-Type": PB})  # same keep-alive connection
    assert conn.getresponse().status == 200
    conn.close()
    c = inproc.otlp_http.counters()
    assert c["rejected"]["malformed"] == 6 and c["rejected"]["unsupported_media_type"] == 1
    assert c["rejected"]["not_found"] == 1 and c["rejected"]["method_not_allowed"] == 1
    assert c["overload"] == 0


def test_gzip_bomb_in_process_allocates_at_most_the_cap(inproc: Collector) -> None:
    bomb = _gzip_zeros(64 * MIB)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        status, _, _ = post(inproc.otlp_http.port, "/v1/metrics", bomb, PB, **{"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert peak < 8 * MIB, f"peak Python allocation {peak / MIB:.1f} MiB for a 1 MiB cap"


def test_grpc_invalid_argument_and_partial_success(inproc: Collector) -> None:
    port, db = inproc.otlp_grpc.port, inproc.cfg.db
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        raw = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xfe garbage \x00" * 10, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        resp = stub.Export(span_request("grpc-partial", 4, bad=2), timeout=10)
    assert resp.partial_success.rejected_spans == 1 and "trace_id" in resp.partial_success.error_message
    assert len(span_ids(db, "grpc-partial")) == 3
    assert inproc.otlp_grpc.counters()["rejected"] == {"malformed": 1, "invalid_item": 1}


def test_http_partial_success_protobuf_and_json(inproc: Collector) -> None:
    port, db = inproc.otlp_http.port, inproc.cfg.db
    status, _, body = post(port, "/v1/traces", span_request("http-partial", 5, bad=0).SerializeToString())
    resp = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_spans == 1
    assert len(span_ids(db, "http-partial")) == 4
    doc = json.loads((DATA / "trace.json").read_text())
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    good = dict(spans[0], spanId="0123456789abcdef")
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = [good, dict(spans[0], traceId="abcd", spanId="1" * 16)]
    status, _, body = post(port, "/v1/traces", json.dumps(doc).encode(), JS)
    assert status == 200 and json.loads(body)["partialSuccess"]["rejectedSpans"] in ("1", 1)
    assert rows(db, "SELECT count(*) FROM records WHERE span_id = '0123456789abcdef'") == [(1,)]


# -- overload: a real slow store --------------------------------------------------------------------

def test_slow_store_answers_429_503_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = str(tmp_path / "slow.db")
    writer = StoreWriter(db, queue_batches=1, flush_interval=0.01, status_interval=3600)
    writer.start()
    pipeline = Pipeline(writer)
    http_rx = OtlpHttpReceiver("127.0.0.1:0", pipeline, submit_timeout=0.1, commit_timeout=0.5)
    grpc_rx = OtlpGrpcReceiver("127.0.0.1:0", pipeline, submit_timeout=0.1, commit_timeout=0.5)
    http_rx.start()
    grpc_rx.start()
    bodies = [span_request("slow", 3).SerializeToString() for _ in range(8)]
    results: dict[int, tuple[int, dict[str, str]]] = {}
    try:
        assert post(http_rx.port, "/v1/traces", bodies[0])[0] == 200  # before the stall
        blocker = apsw.Connection(db)
        blocker.set_busy_timeout(5000)
        blocker.execute("BEGIN EXCLUSIVE")  # the store cannot commit until this ends
        try:
            def send(i: int) -> None:
                status, headers, _ = post(http_rx.port, "/v1/traces", bodies[i])
                results[i] = (status, headers)

            # 1: taken by the writer, which then blocks on the lock; the commit never comes in time.
            send(1)
            # 2: fills the queue (size 1) behind it; waits for a commit that does not come either.
            second = threading.Thread(target=send, args=(2,))
            second.start()
            wait_for(lambda: writer.stats()["queue_depth"] == 1, what="second request queued")
            # 3..7: the queue stays full: refused quickly with 429.
            threads = [threading.Thread(target=send, args=(i,)) for i in range(3, 8)]
            for t in threads:
                t.start()
            with grpc.insecure_channel(f"127.0.0.1:{grpc_rx.port}") as ch:
                stub = trace_service_pb2_grpc.TraceServiceStub(ch)
                with pytest.raises(grpc.RpcError) as info:
                    stub.Export(span_request("slow-grpc", 2), timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "google.rpc.retryinfo-bin" in dict(info.value.trailing_metadata())
            for t in [second, *threads]:
                t.join(10)
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        statuses = [results[i][0] for i in range(1, 8)]
        assert statuses == [503, 503, 429, 429, 429, 429, 429], statuses
        assert all(h.get("retry-after") == "1" for s, h in results.values() if s in (429, 503))
        # The client retries what was not acknowledged; nothing is lost and nothing doubled.
        for i in range(8):
            for _ in range(50):
                if post(http_rx.port, "/v1/traces", bodies[i])[0] == 200:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"request {i} never accepted")
        stored = span_ids(db, "slow")
        assert len(stored) == len(set(stored)) == 8 * 3
        for body in bodies:
            for sp in ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans:
                assert (sp.trace_id.hex(), sp.span_id.hex()) in set(stored)
        overload = http_rx.counters()["overload_by_reason"]
        assert overload["overloaded"] >= 5 and overload["commit_timeout"] >= 2
        assert writer.stats()["duplicates"] >= 3  # the 503s had been committed after all: retry was a no-op
    finally:
        assert grpc_rx.shutdown(5) and http_rx.shutdown(5)
        assert writer.shutdown(10)


# -- lifecycle and configuration --------------------------------------------------------------------

def test_bind_failure_raises_at_start_and_shutdown_is_idempotent(inproc: Collector) -> None:
    for cls, rx in ((OtlpHttpReceiver, inproc.otlp_http), (OtlpGrpcReceiver, inproc.otlp_grpc)):
        other = cls(rx.endpoint, inproc.pipeline)
        with pytest.raises((OSError, RuntimeError)):
            other.start()
        assert other.shutdown(1) and other.shutdown(1)
        assert cls("127.0.0.1:0", inproc.pipeline).shutdown(1)  # never started


def test_status_names_a_receiver_once_it_listens(inproc: Collector) -> None:
    """The status row is written about once a second while the receivers start: one written
    between a receiver's creation and its bind said ``127.0.0.1:0``, and a reader sent there."""
    status = inproc.status()
    for name in ("otlp_http", "otlp_grpc"):
        rx = getattr(inproc, name)
        assert rx.listening and status[name]["endpoint"] == rx.endpoint and not rx.endpoint.endswith(":0")
    running, starting = inproc.otlp_grpc, OtlpGrpcReceiver("127.0.0.1:0", inproc.pipeline)
    inproc.otlp_grpc = starting  # as while it binds
    try:
        assert not starting.listening and "otlp_grpc" not in inproc.status()
        starting.start()
        assert inproc.status()["otlp_grpc"]["endpoint"] == starting.endpoint
    finally:
        inproc.otlp_grpc = running
        assert starting.shutdown(5)


def test_config_keys(tmp_path: Path) -> None:
    cfg = load(None, db=str(tmp_path / "x.db"), endpoint="ipc:///tmp/x.ipc")
    assert (cfg.otlp_grpc.enabled, cfg.otlp_grpc.endpoint, cfg.otlp_grpc.max_body_bytes) == (True, "127.0.0.1:4317",
                                                                                             8 * MIB)
    assert (cfg.otlp_http.enabled, cfg.otlp_http.endpoint) == (True, "127.0.0.1:4318")
    p = tmp_path / "c.yaml"
    for text, needle in (("receivers: {otlp_http: {port: 1}}", "'port'"),
                         ("receivers: {otlp_grpc: {enabled: 'yes'}}", "otlp_grpc.enabled"),
                         ("receivers: {otlp_http: {endpoint: 'localhost'}}", "otlp_http.endpoint"),
                         ("receivers: {otlp_http: {endpoint: 'h:99999'}}", "otlp_http.endpoint"),
                         ("receivers: {otlp_grpc: {max_body_bytes: 0}}", "otlp_grpc.max_body_bytes"),
                         ("receivers: {otlp_grpc: {max_body_bytes: '8M'}}", "otlp_grpc.max_body_bytes"),
                         ("receivers: {otlp_json: {}}", "'otlp_json'")):
        p.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load(str(p), db=str(tmp_path / "x.db"), endpoint="ipc:///tmp/x.ipc")
    p.write_text("receivers: {otlp_http: {enabled: false, endpoint: '[::1]:0', max_body_bytes: 1024}}")
    cfg = load(str(p), db=str(tmp_path / "x.db"), endpoint="ipc:///tmp/x.ipc")
    assert (cfg.otlp_http.enabled, cfg.otlp_http.endpoint, cfg.otlp_http.max_body_bytes) == (False, "[::1]:0", 1024)


def test_one_bad_timestamp_rejects_only_its_span(inproc: Collector) -> None:
    """Issue 15 item 13: a start time past 2^63 ns (fixed64 allows up to 2^64-1) is one rejected span
    (partial_success), never a failed batch and a retryable 503 the client resends forever."""
    port, db = inproc.otlp_http.port, inproc.cfg.db
    req = span_request("bad-time", 4)
    req.resource_spans[0].scope_spans[0].spans[2].start_time_unix_nano = 2**64 - 1
    status, _, body = post(port, "/v1/traces", req.SerializeToString())
    resp = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_spans == 1
    assert "timestamp" in resp.partial_success.error_message
    assert len(span_ids(db, "bad-time")) == 3
