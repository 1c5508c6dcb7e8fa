"""OTLP decoders → wire tuples → schema rows, on real OTLP files written by other projects.

Expected values come from the files themselves (walked independently of the decoder) or from the
official ``opentelemetry.proto`` classes, never from the decoder under test.
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2 as c
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.trace.v1 import trace_pb2 as t

from otel_telemetry import categories as cats
from otel_telemetry.categories import CATEGORY_SET
from otel_telemetry.collector import mapping
from otel_telemetry.otlp import decode as otlp
from otel_telemetry.otlp.decode import DecodeResult, OtlpDecodeError
from otel_telemetry.store import schema

DATA = Path(__file__).parents[1] / "data" / "otlp"
TRACE_FILES = ["trace.json", "jaeger-example_trace.json", "jaeger-otlp2jaeger-in.json",
               "jaeger-ui-error-span.json", "jaeger-ui-multi-resource.json",
               "collector-contrib-empty-ids.json"]
LOG_FILES = ["logs.json", "events.json"]


def _rows(res: DecodeResult) -> list[dict[str, Any]]:
    return [dict(zip(schema.COLUMNS, row, strict=True))
            for resource, records, uid_base in res.batches
            for row in mapping.rows_from_batch(res.kind, resource, records, None, uid_base)]


def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _walk(doc: dict[str, Any], rkey: str, skey: str, ikey: str) -> Iterator[tuple[dict, dict]]:
    """(resource entry, item) pairs straight from the JSON, in document order."""
    for rs in doc.get(rkey, []):
        for ss in rs.get(skey, []):
            for item in ss.get(ikey, []):
                yield rs, item


def _service(rs: dict[str, Any]) -> str | None:
    for kv in rs.get("resource", {}).get("attributes", []):
        if kv["key"] == "service.name":
            return kv["value"]["stringValue"]
    return None


def _hex(value: str | None) -> str | None:
    return value.lower() if value else None


# --- real JSON files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRACE_FILES)
def test_trace_files_map_ids_counts_and_fields(name: str) -> None:
    doc = _load(name)
    res = otlp.decode_traces_json((DATA / name).read_bytes())
    assert res.rejected == 0 and res.error_message is None
    assert len(res.batches) == len(doc["resourceSpans"])
    rows = _rows(res)
    expected = list(_walk(doc, "resourceSpans", "scopeSpans", "spans"))
    assert len(rows) == len(expected)
    kinds = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
    for row, (rs, span) in zip(rows, expected, strict=True):
        assert row["type"] == "span"
        assert row["trace_id"] == _hex(span["traceId"])
        assert row["span_id"] == _hex(span["spanId"])
        assert row["parent_span_id"] == _hex(span.get("parentSpanId"))
        assert row["name"] == span["name"]
        assert row["service"] == _service(rs)
        assert row["kind"] == kinds[span.get("kind", 0)]
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        assert row["timestamp"] == start
        assert row["duration_ms"] == pytest.approx((end - start) / 1e6)
        assert row["status"] == ("unset", "ok", "error")[span.get("status", {}).get("code", 0)]
        assert row["category"] in CATEGORY_SET
        assert isinstance(row["uid"], bytes) and len(row["uid"]) in (16, 24)


def test_trace_json_exact_values() -> None:
    (row,) = _rows(otlp.decode_traces_json((DATA / "trace.json").read_bytes()))
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["span_id"] == "eee19b7ec3c1b174"
    assert row["parent_span_id"] == "eee19b7ec3c1b173"
    assert row["uid"] == bytes.fromhex("5b8efff798038103d269b633813fc60ceee19b7ec3c1b174")
    assert (row["kind"], row["service"], row["duration_ms"]) == ("server", "my.service", 1000.0)
    assert row["timestamp"] == 1544712660000000000
    assert (row["category"], row["component"]) == ("user_interaction", "my.library")
    assert json.loads(row["metadata"])["scope"] == {"name": "my.library", "version": "1.0.0"}
    assert json.loads(row["data"])["attributes"] == {"my.span.attr": "some value"}


def test_jaeger_files_exact_values() -> None:
    rows = _rows(otlp.decode_traces_json((DATA / "jaeger-example_trace.json").read_bytes()))
    assert [r["span_id"] for r in rows] == [f"000000000000000{i}" for i in (4, 5, 3, 6, 7)]
    assert {r["trace_id"] for r in rows} == {"00000000000000000000000000000011"}
    assert [r["service"] for r in rows] == ["example-service-2", "example-service-3"] + \
        ["example-service-1"] * 3
    assert [r["kind"] for r in rows] == ["internal", "internal", "internal", "server", "client"]
    assert all(r["duration_ms"] == pytest.approx(0.1) for r in rows)
    assert len(json.loads(rows[0]["data"])["events"]) == 2

    rows = _rows(otlp.decode_traces_json((DATA / "jaeger-ui-multi-resource.json").read_bytes()))
    root = [r for r in rows if r["parent_span_id"] is None]
    assert [r["span_id"] for r in root] == ["eff3153be6b1fb93"]
    assert root[0]["duration_ms"] == pytest.approx(176.321958)


def test_jaeger_ui_error_span() -> None:
    # The fixture's "error" is the converter's error case (a resource without service.name); the
    # span's own status is {} i.e. UNSET. Setting code 2 on the same real span must give 'error'.
    raw = (DATA / "jaeger-ui-error-span.json").read_bytes()
    (row,) = _rows(otlp.decode_traces_json(raw))
    assert (row["service"], row["status"], row["kind"]) == (None, "unset", "server")
    assert row["trace_id"] == "83a9efd15c1c98a977e0711cc93ee28b"
    assert row["duration_ms"] == pytest.approx(0.123)

    doc = json.loads(raw)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"] = {"code": 2, "message": "boom"}
    (row,) = _rows(otlp.decode_traces_json(json.dumps(doc).encode()))
    assert (row["status"], row["status_message"], row["level"]) == ("error", "boom", "error")
    assert row["category"] == "error_patterns"


def test_empty_ids_get_content_uids() -> None:
    res = otlp.decode_traces_json((DATA / "collector-contrib-empty-ids.json").read_bytes())
    recs = [rec for _, records, _ in res.batches for rec in records]
    assert [(r[1], r[2], r[3]) for r in recs] == [(b"", b"", None)] * 3
    assert recs[1][11] == [(b"", b"", {"span-link-attr": "span-link-attr-val"}), (b"", b"", {})]
    rows = _rows(res)
    assert all(r["trace_id"] is None and r["span_id"] is None for r in rows)
    assert len({r["uid"] for r in rows}) == 3
    assert (rows[0]["status"], rows[0]["status_message"]) == ("error", "status-cancelled")
    assert [e["name"] for e in json.loads(rows[0]["data"])["events"]] == ["event-with-attr", "event"]
    assert json.loads(rows[2]["metadata"])["resource"] == {"resource-attr": "resource-attr-val-2"}


def test_metrics_json() -> None:
    res = otlp.decode_metrics_json((DATA / "metrics.json").read_bytes())
    assert res.kind == "metric" and res.rejected == 0
    rows = _rows(res)
    doc = _load("metrics.json")
    assert len(rows) == sum(len(next(v for k, v in met.items() if isinstance(v, dict))["dataPoints"])
                            for _, met in _walk(doc, "resourceMetrics", "scopeMetrics", "metrics"))
    by = {r["name"]: r for r in rows}
    assert [(r["metric_type"], r["metric_value"]) for r in rows] == [
        ("sum", 5.0), ("gauge", 10.0), ("histogram", 2.0), ("exponential_histogram", 10.0)]
    assert all(r["timestamp"] == 1544712660300000000 and r["service"] == "my.service" for r in rows)
    assert all(r["category"] in CATEGORY_SET and r["metric_unit"] == "1" for r in rows)
    counter = json.loads(by["my.counter"]["data"])
    assert (counter["monotonic"], counter["temporality"]) == (True, 1)
    assert counter["attributes"] == {"my.counter.attr": "some value"}
    hist = json.loads(by["my.histogram"]["data"])
    assert {k: hist[k] for k in ("count", "sum", "min", "max", "bounds", "counts")} == {
        "count": 2, "sum": 2.0, "min": 0.0, "max": 2.0, "bounds": [1.0], "counts": [1, 1]}
    exp = json.loads(by["my.exponential.histogram"]["data"])
    assert (exp["scale"], exp["zero_count"], exp["count"], exp["max"]) == (0, 1, 3, 5.0)
    assert exp["positive"] == {"offset": 1, "counts": [0, 2]}
    assert len({r["uid"] for r in rows}) == 4


@pytest.mark.parametrize("name", LOG_FILES)
def test_log_files(name: str) -> None:
    doc = _load(name)
    res = otlp.decode_logs_json((DATA / name).read_bytes())
    rows = _rows(res)
    expected = list(_walk(doc, "resourceLogs", "scopeLogs", "logRecords"))
    assert len(rows) == len(expected) and res.rejected == 0
    for row, (rs, rec) in zip(rows, expected, strict=True):
        assert row["type"] == "log" and row["service"] == _service(rs)
        assert row["timestamp"] == int(rec["timeUnixNano"])
        assert row["level"] == cats.severity_level(rec["severityNumber"])
        assert row["trace_id"] == _hex(rec.get("traceId"))
        assert row["span_id"] == _hex(rec.get("spanId"))
        assert row["category"] in CATEGORY_SET


def test_logs_json_values() -> None:
    ((resource, (rec,), _),) = otlp.decode_logs_json((DATA / "logs.json").read_bytes()).batches
    assert resource == {"service.name": "my.service"}
    assert rec[0:4] == (1544712660300000000, 1544712660300000000, 10, "Information")
    assert rec[4] == "Example log record"
    assert rec[5] == {"string.attribute": "some string", "boolean.attribute": True,
                      "int.attribute": 10, "double.attribute": 637.704,
                      "array.attribute": ["many", "values"],
                      "map.attribute": {"some.map.key": "some value"}}
    assert rec[6] == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert rec[7] == bytes.fromhex("eee19b7ec3c1b174")
    assert rec[8:] == (None, "my.library", "1.0.0")

    (row,) = _rows(otlp.decode_logs_json((DATA / "events.json").read_bytes()))
    assert (row["event"], row["name"], row["level"]) == ("browser.page_view", "browser.page_view", "info")
    body = json.loads(row["data"])["body"]
    assert body["type"] == 0 and body["title"] == "Free Online GUID Generator"


# --- protobuf files ---------------------------------------------------------------------------------


def test_trace_protobuf_file_matches_official_parser() -> None:
    body = (DATA / "trace.protobuf-bin").read_bytes()
    req = ExportTraceServiceRequest.FromString(body)
    official = [(s.trace_id, s.span_id, s.parent_span_id, s.name)
                for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    res = otlp.decode_traces_pb(body)
    ours = [(r[1], r[2], r[3], r[0]) for _, recs, _ in res.batches for r in recs]
    assert ours == official and len(ours) == 1
    (row,) = _rows(res)
    assert row["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert row["parent_span_id"] == "eee19b7ec3c1b173"
    assert (row["kind"], row["service"], row["duration_ms"]) == ("server", "my.service", 1000.0)
    # Same content as trace.json, so the same records whichever encoding it came in.
    json_res = otlp.decode_traces_json((DATA / "trace.json").read_bytes())
    assert [b[:2] for b in json_res.batches] == [b[:2] for b in res.batches]


def test_metrics_protobuf_file_matches_official_parser() -> None:
    body = (DATA / "metrics.protobuf-bin").read_bytes()
    req = ExportMetricsServiceRequest.FromString(body)
    official = [(met.name, met.WhichOneof("data"), dp.time_unix_nano)
                for rm in req.resource_metrics for sm in rm.scope_metrics for met in sm.metrics
                for dp in getattr(met, met.WhichOneof("data")).data_points]
    res = otlp.decode_metrics_pb(body)
    assert [(r[0], r[3], r[4]) for _, recs, _ in res.batches for r in recs] == official
    rows = _rows(res)
    assert [(r["metric_type"], r["metric_value"]) for r in rows] == [
        ("sum", 5.0), ("gauge", 10.0), ("histogram", 2.0)]
    assert all(r["service"] == "my.service" and r["category"] in CATEGORY_SET for r in rows)


# --- JSON and protobuf agree -----------------------------------------------------------------------


def _kv(key: str, **value: Any) -> c.KeyValue:
    return c.KeyValue(key=key, value=c.AnyValue(**value))


ATTRS = [
    _kv("s", string_value="x"), _kv("b", bool_value=True), _kv("i", int_value=-(2**62)),
    _kv("d", double_value=1.5), _kv("raw", bytes_value=b"\x00\xff"),
    _kv("arr", array_value=c.ArrayValue(values=[c.AnyValue(int_value=1), c.AnyValue(string_value="a")])),
    _kv("map", kvlist_value=c.KeyValueList(values=[_kv("k", double_value=2.0)])),
    _kv("empty"),
]
RESOURCE = {"attributes": [_kv("service.name", string_value="svc")]}
SCOPE = c.InstrumentationScope(name="lib", version="9")
TID, SID, PID = bytes(range(1, 17)), bytes(range(20, 28)), bytes(range(30, 38))


# Large exact nanoseconds (2024): past, since the collector clamps rows dated in the future.
BIG_T = 3 * 2**59


def _trace_request() -> ExportTraceServiceRequest:
    spans = [t.Span(trace_id=TID, span_id=SID, parent_span_id=PID, name="root", kind=2,
                    start_time_unix_nano=BIG_T, end_time_unix_nano=BIG_T + 1_500_000, attributes=ATTRS,
                    status=t.Status(code=2, message="bad"),
                    events=[t.Span.Event(name="exception", time_unix_nano=BIG_T + 5, attributes=ATTRS)],
                    links=[t.Span.Link(trace_id=TID[::-1], span_id=SID[::-1], attributes=ATTRS[:2])])]
    spans += [t.Span(trace_id=TID, span_id=bytes([k] * 8), name=f"k{k}", kind=k, status=t.Status(code=1))
              for k in range(6)]
    return ExportTraceServiceRequest(resource_spans=[
        t.ResourceSpans(resource=RESOURCE, scope_spans=[t.ScopeSpans(scope=SCOPE, spans=spans)]),
        t.ResourceSpans(scope_spans=[t.ScopeSpans(spans=[t.Span(name="no-ids")])]),
    ])


def _metrics_request() -> ExportMetricsServiceRequest:
    ts = {"time_unix_nano": 2**59 * 3, "start_time_unix_nano": 2**60, "attributes": ATTRS}
    ex = m.Exemplar(trace_id=TID, span_id=SID, as_double=1.0, time_unix_nano=2**59 * 3)
    metrics = [
        m.Metric(name="g", unit="ms", description="gauge", gauge=m.Gauge(data_points=[
            m.NumberDataPoint(as_int=7, exemplars=[ex], **ts), m.NumberDataPoint(as_double=0.5, **ts),
            m.NumberDataPoint(as_double=3.0, flags=1, **ts)])),
        m.Metric(name="s", sum=m.Sum(aggregation_temporality=2, is_monotonic=True,
                                     data_points=[m.NumberDataPoint(as_int=2**40, **ts)])),
        m.Metric(name="h", histogram=m.Histogram(aggregation_temporality=1, data_points=[
            m.HistogramDataPoint(count=3, sum=6.0, min=1.0, max=3.0, explicit_bounds=[1.0, 2.0],
                                 bucket_counts=[1, 1, 1], **ts),
            m.HistogramDataPoint(count=1, bucket_counts=[1], **ts)])),
        m.Metric(name="e", exponential_histogram=m.ExponentialHistogram(data_points=[
            m.ExponentialHistogramDataPoint(
                count=4, sum=9.0, scale=2, zero_count=1, zero_threshold=0.001,
                positive=m.ExponentialHistogramDataPoint.Buckets(offset=-1, bucket_counts=[1, 2]),
                negative=m.ExponentialHistogramDataPoint.Buckets(offset=3, bucket_counts=[1]), **ts)])),
        m.Metric(name="q", summary=m.Summary(data_points=[m.SummaryDataPoint(
            count=10, sum=55.0, quantile_values=[
                m.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=5.0),
                m.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.9)], **ts)])),
    ]
    return ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
        resource=RESOURCE, scope_metrics=[m.ScopeMetrics(scope=SCOPE, metrics=metrics)])])


def _logs_request() -> ExportLogsServiceRequest:
    recs = [logs_pb2.LogRecord(time_unix_nano=BIG_T, observed_time_unix_nano=BIG_T + 1, severity_number=17,
                               severity_text="ERROR", body=c.AnyValue(kvlist_value=c.KeyValueList(
                                   values=ATTRS)), attributes=ATTRS, trace_id=TID, span_id=SID,
                               event_name="gen_ai.choice"),
            logs_pb2.LogRecord(observed_time_unix_nano=5, body=c.AnyValue(string_value="plain"))]
    return ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=RESOURCE, scope_logs=[logs_pb2.ScopeLogs(scope=SCOPE, log_records=recs)])])


def _b64_to_hex(obj: Any) -> Any:
    """MessageToDict writes proto3 JSON (base64 ids); OTLP/JSON wants hex."""
    if isinstance(obj, list):
        return [_b64_to_hex(x) for x in obj]
    if isinstance(obj, dict):
        return {k: base64.b64decode(v).hex().upper() if k in ("traceId", "spanId", "parentSpanId",
                                                               "trace_id", "span_id", "parent_span_id")
                else _b64_to_hex(v) for k, v in obj.items()}
    return obj


def _otlp_json(req: Any, snake: bool = False) -> bytes:
    doc = json_format.MessageToDict(req, preserving_proto_field_name=snake)
    return json.dumps(_b64_to_hex(doc)).encode()


REQUESTS: list[tuple[Callable[[], Any], Callable[[bytes], DecodeResult], Callable[[bytes], DecodeResult]]] = [
    (_trace_request, otlp.decode_traces_pb, otlp.decode_traces_json),
    (_metrics_request, otlp.decode_metrics_pb, otlp.decode_metrics_json),
    (_logs_request, otlp.decode_logs_pb, otlp.decode_logs_json),
]


@pytest.mark.parametrize("snake", [False, True], ids=["camelCase", "snake_case"])
@pytest.mark.parametrize("build,from_pb,from_json", REQUESTS, ids=["traces", "metrics", "logs"])
def test_json_and_protobuf_agree(build: Callable[[], Any], from_pb: Callable[[bytes], DecodeResult],
                                 from_json: Callable[[bytes], DecodeResult], snake: bool) -> None:
    req = build()
    a = from_pb(req.SerializeToString())
    b = from_json(_otlp_json(req, snake))
    assert a == b and a.rejected == 0 and a.batches and a.batches[0][1]
    assert _rows(a) == _rows(b)


def test_protobuf_tuples_exact() -> None:
    res = otlp.decode_traces_pb(_trace_request().SerializeToString())
    (resource, spans, _), (_, (no_ids,), _) = res.batches
    assert resource == {"service.name": "svc"}
    root = spans[0]
    assert root[:9] == ("root", TID, SID, PID, BIG_T, BIG_T + 1_500_000, 1, 2, "bad")
    assert root[9] == {"s": "x", "b": True, "i": -(2**62), "d": 1.5, "raw": "00ff", "arr": [1, "a"],
                       "map": {"k": 2.0}, "empty": None}
    assert root[10] == [("exception", BIG_T + 5, root[9])]
    assert root[11] == [(TID[::-1], SID[::-1], {"s": "x", "b": True})]
    assert root[12:] == ("lib", "9")
    assert [s[6] for s in spans[1:]] == [0, 0, 1, 2, 3, 4]  # OTLP UNSPECIFIED, INTERNAL..CONSUMER
    assert no_ids[1:4] == (b"", b"", None) and no_ids[12:] == (None, None)
    rows = _rows(res)
    assert rows[0]["category"] == "error_patterns" and rows[0]["duration_ms"] == 1.5
    assert [r["kind"] for r in rows[1:7]] == ["internal", "internal", "server", "client", "producer",
                                              "consumer"]

    res = otlp.decode_metrics_pb(_metrics_request().SerializeToString())
    recs = res.batches[0][1]
    assert [(r[0], r[3], r[6]) for r in recs] == [
        ("g", "gauge", 7), ("g", "gauge", 0.5), ("g", "gauge", None), ("s", "sum", 2**40),
        ("h", "histogram", 6.0), ("h", "histogram", None), ("e", "exponential_histogram", 9.0),
        ("q", "summary", 55.0)]
    assert recs[0][1:3] == ("gauge", "ms") and recs[0][4:6] == (2**59 * 3, 2**60)
    assert recs[3][8] == {"monotonic": True, "temporality": 2}
    assert recs[5][8]["sum"] is None and recs[5][8]["min"] is None
    assert recs[6][8]["negative"] == {"offset": 3, "counts": [1]} and recs[6][8]["zero_threshold"] == 0.001
    assert recs[7][8]["quantiles"] == [{"quantile": 0.5, "value": 5.0}, {"quantile": 0.99, "value": 9.9}]
    assert {r["metric_type"] for r in _rows(res)} == {"gauge", "sum", "histogram",
                                                       "exponential_histogram", "summary"}

    res = otlp.decode_logs_pb(_logs_request().SerializeToString())
    first, second = res.batches[0][1]
    assert first[:4] == (BIG_T, BIG_T + 1, 17, "ERROR") and first[4] == root[9]
    assert first[6:] == (TID, SID, "gen_ai.choice", "lib", "9")
    assert second[4] == "plain" and second[6:9] == (None, None, None)
    rows = _rows(res)
    assert rows[0]["level"] == "error" and rows[0]["category"] == "error_patterns"
    assert rows[1]["timestamp"] == 5 and rows[1]["level"] == "info"


def test_int64_as_json_numbers_is_accepted() -> None:
    doc = _load("trace.json")
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
    (row,) = _rows(otlp.decode_traces_json(json.dumps(doc).encode()))
    assert row["timestamp"] == 1544712660000000000


# --- idempotent uid_base --------------------------------------------------------------------------


@pytest.mark.parametrize("build,from_pb,from_json", REQUESTS, ids=["traces", "metrics", "logs"])
def test_uid_base_is_content_deterministic(build: Callable[[], Any],
                                           from_pb: Callable[[bytes], DecodeResult],
                                           from_json: Callable[[bytes], DecodeResult]) -> None:
    req = build()
    body = req.SerializeToString()
    first = [b[2] for b in from_pb(body).batches]
    assert first == [b[2] for b in from_pb(body).batches]
    assert first == [b[2] for b in from_json(_otlp_json(req)).batches]  # encoding does not matter
    assert all(len(u) == 16 for u in first)
    getattr(req, req.DESCRIPTOR.fields[0].name)[0].resource.attributes.add(key="host", value={"int_value": 1})
    changed = [b[2] for b in from_pb(req.SerializeToString()).batches]
    assert changed[0] != first[0]


def test_rows_uids_stable_across_redelivery() -> None:
    body = (DATA / "metrics.json").read_bytes()
    assert [r["uid"] for r in _rows(otlp.decode_metrics_json(body))] == \
        [r["uid"] for r in _rows(otlp.decode_metrics_json(body))]
    other = body.replace(b'"asDouble": 5', b'"asDouble": 6')
    assert _rows(otlp.decode_metrics_json(other))[0]["uid"] != _rows(otlp.decode_metrics_json(body))[0]["uid"]


# --- malformed input -------------------------------------------------------------------------------

DECODERS = [otlp.decode_traces_pb, otlp.decode_metrics_pb, otlp.decode_logs_pb,
            otlp.decode_traces_json, otlp.decode_metrics_json, otlp.decode_logs_json]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("body", [
    b"\xff\xff\xff\xff", b"garbage that is neither", b"\x0a\x05abc", "not bytes", b"[1, 2]", b"null",
    b'{"resourceSpans": {}, "resourceMetrics": 5, "resourceLogs": "x"}',
    b'{"resourceSpans": [5], "resourceMetrics": [5], "resourceLogs": [5]}',
    b'{"resourceSpans": [{"scopeSpans": {}}], "resourceMetrics": [{"scopeMetrics": 1}],'
    b' "resourceLogs": [{"scopeLogs": "x"}]}',
    b'{"resourceSpans": [{"resource": 5, "scopeSpans": []}], "resourceMetrics": [{"resource": 5}],'
    b' "resourceLogs": [{"resource": 5}]}',
    b'[' * 100_000,
])
def test_garbage_raises_decode_error_only(decoder: Callable[[Any], DecodeResult], body: Any) -> None:
    with pytest.raises(OtlpDecodeError):
        decoder(body)


def test_bad_ids_and_ints_are_rejected_individually() -> None:
    doc = _load("jaeger-ui-multi-resource.json")
    spans = [s for _, s in _walk(doc, "resourceSpans", "scopeSpans", "spans")]
    spans[0]["traceId"] = "zz"
    spans[1]["spanId"] = "abcd"  # valid hex, wrong length
    spans[2]["startTimeUnixNano"] = "abc"
    res = otlp.decode_traces_json(json.dumps(doc).encode())
    assert res.rejected == 3 and "traceId" in (res.error_message or "")
    assert [r["span_id"] for r in _rows(res)] == ["eff3153be6b1fb93"]

    doc = _load("trace.json")
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"] = [{"traceId": "00", "spanId": ""}]
    res = otlp.decode_traces_json(json.dumps(doc).encode())
    assert (res.rejected, len(res.batches), res.batches[0][1]) == (1, 1, [])
    assert "link trace_id has 1 bytes" in (res.error_message or "")

    req = _trace_request()
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"12345"
    res = otlp.decode_traces_pb(req.SerializeToString())
    assert res.rejected == 1 and "trace_id has 5 bytes, expected 16" in (res.error_message or "")
    assert len(res.batches[0][1]) == 6

    doc = _load("logs.json")
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"].append({"spanId": "x" * 16})
    res = otlp.decode_logs_json(json.dumps(doc).encode())
    assert res.rejected == 1 and len(res.batches[0][1]) == 1

    doc = _load("metrics.json")
    doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][2]["histogram"]["dataPoints"][0]["count"] = "abc"
    res = otlp.decode_metrics_json(json.dumps(doc).encode())
    assert res.rejected == 1 and [r[3] for r in res.batches[0][1]] == ["sum", "gauge", "exponential_histogram"]


def test_resource_level_bad_int_raises() -> None:
    doc = _load("trace.json")
    doc["resourceSpans"][0]["resource"]["attributes"][0]["value"] = {"intValue": "abc"}
    with pytest.raises(OtlpDecodeError, match="resourceSpans\\[0\\]"):
        otlp.decode_traces_json(json.dumps(doc).encode())


def test_empty_requests_are_valid() -> None:
    for decoder in DECODERS:
        assert decoder(b"{}" if "json" in decoder.__name__ else b"").batches == []


def _mutations(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    junk = [None, "abc", "zz", -1, 2**70, 1.5, [], {}, [1], {"x": 1}, True, "", "\u0000", "1e400"]
    nodes: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in items:
            nodes.append((node, key))
            collect(child)

    collect(doc)
    for _ in range(rng.randint(1, 3)):
        parent, key = rng.choice(nodes)
        parent[key] = rng.choice(junk)
    return doc


@pytest.mark.parametrize("name", TRACE_FILES + LOG_FILES + ["metrics.json"])
def test_fuzzed_json_never_escapes(name: str) -> None:
    decoder = {"logs.json": otlp.decode_logs_json, "events.json": otlp.decode_logs_json,
               "metrics.json": otlp.decode_metrics_json}.get(name, otlp.decode_traces_json)
    rng = random.Random(name)
    doc = _load(name)
    for _ in range(300):
        try:
            body = json.dumps(_mutations(doc, rng)).encode()
        except ValueError:
            continue
        try:
            res = decoder(body)
        except OtlpDecodeError:
            continue
        _rows(res)  # whatever decoded must also map


@pytest.mark.parametrize("decoder,name", [(otlp.decode_traces_pb, "trace.protobuf-bin"),
                                          (otlp.decode_metrics_pb, "metrics.protobuf-bin")])
def test_fuzzed_protobuf_never_escapes(decoder: Callable[[bytes], DecodeResult], name: str) -> None:
    from otel_telemetry.collector.pipeline import Pipeline

    pipeline = Pipeline(None)  # type: ignore[arg-type]  # map_each never touches the store
    rng = random.Random(name)
    body = (DATA / name).read_bytes()
    for _ in range(2000):
        b = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        b = b[:rng.randint(1, len(b))] if rng.random() < 0.3 else b
        try:
            res = decoder(bytes(b))
        except OtlpDecodeError:
            continue
        # As the receivers map: a record the store cannot take (a timestamp past 2^63 ns) is
        # rejected alone by Pipeline.map_each; nothing else may escape.
        for resource, records, uid_base in res.batches:
            rows, kept, bad, _ = pipeline.map_each(res.kind, resource, records, None, uid_base)
            assert len(kept) + bad == len(records) and len(rows) >= len(kept)


def test_rejected_metric_counts_its_data_points() -> None:
    doc = json.loads(_otlp_json(_metrics_request()))
    gauge = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    gauge["gauge"]["dataPoints"][0]["exemplars"][0]["traceId"] = "not-hex"
    res = otlp.decode_metrics_json(json.dumps(doc).encode())
    assert res.rejected == 3 and "not a hex id" in (res.error_message or "")
    assert [r[0] for r in res.batches[0][1]] == ["s", "h", "h", "e", "q"]


def test_error_messages_are_bounded() -> None:
    doc = _load("trace.json")
    doc["resourceSpans"][0]["resource"]["attributes"][0]["value"] = {"intValue": "9" * 10_000}
    with pytest.raises(OtlpDecodeError) as info:
        otlp.decode_traces_json(json.dumps(doc).encode())
    assert len(str(info.value)) <= 500
