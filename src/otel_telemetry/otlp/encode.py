"""Wire record tuples → OTLP export requests (the inverse of ``collector.otlp``).

Input is the SPAN / METRIC / LOG tuple layout of ``otel_telemetry.wire`` (records may arrive as
lists after msgpack); output is an ExportTrace/Metrics/LogsServiceRequest. Used by the forwarder
on its own encoder thread, never on a receiver thread and never in the application.

Mapping notes:

* span kinds: ours 0..4 (internal, server, client, producer, consumer, as the SDK numbers them)
  become OTLP 1..5; status codes have the same numbers in both (unset 0, ok 1, error 2);
* several batches with the same resource attributes share one ResourceSpans/Metrics/Logs, and
  records with the same (scope name, scope version) one Scope* entry;
* metric points with the same name, description, unit, type (and, for sums and histograms,
  temporality and monotonicity) share one Metric; the ``extra`` dict carries what each type needs
  (``count, sum, min, max, bounds, counts, monotonic, temporality``; exponential histograms
  ``scale, zero_count, zero_threshold, positive, negative``; summaries ``quantiles``). Temporality
  may be an OTLP number (1 delta, 2 cumulative) or "delta"/"cumulative"; absent means cumulative;
* a record that cannot be encoded is left out and counted in :class:`Encoded` rather than failing
  the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
    SummaryDataPoint,
)

KINDS = ("span", "metric", "log")
SIGNAL_OF_KIND = {"span": "traces", "metric": "metrics", "log": "logs"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK
_TEMPORALITY = {"delta": 1, "cumulative": 2, 1: 1, 2: 2}

BatchIn = tuple[dict[str, Any], Sequence[Sequence[Any]]]  # (resource attributes, records)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One request: ``body`` (serialized protobuf), ``items`` records encoded, ``bad`` left out."""

    kind: str
    body: bytes
    items: int
    bad: int


# --- values ----------------------------------------------------------------------------------------


def set_any(out: AnyValue, v: Any) -> None:
    """Fill ``out`` from a Python attribute value (None leaves it empty)."""
    if v is None:
        return
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int):
        if _INT64_MIN <= v <= _INT64_MAX:
            out.int_value = v
        else:
            out.string_value = str(v)
    elif isinstance(v, float):
        out.double_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.bytes_value = bytes(v)
    elif isinstance(v, (list, tuple, set, frozenset)):
        arr = out.array_value
        arr.SetInParent()
        for x in v:
            set_any(arr.values.add(), x)
    elif isinstance(v, dict):
        kvl = out.kvlist_value
        kvl.SetInParent()
        set_attrs(kvl.values, v)
    else:
        out.string_value = str(v)


def set_attrs(container: Any, attrs: Any) -> None:
    """Append ``attrs`` (a dict, or None) as KeyValues to a repeated KeyValue field."""
    if not attrs:
        return
    for key, value in attrs.items():
        kv: KeyValue = container.add()
        kv.key = str(key)
        set_any(kv.value, value)


def _id(v: Any, size: int) -> bytes:
    """Raw id bytes; accepts hex strings too; None/empty → b"" (absent in OTLP)."""
    if not v:
        return b""
    raw = bytes.fromhex(v) if isinstance(v, str) else bytes(v)
    if len(raw) != size:
        raise ValueError(f"id of {len(raw)} bytes, expected {size}")
    return raw


def _u64(v: Any) -> int:
    n = int(v or 0)
    if not 0 <= n <= _UINT64_MAX:
        raise ValueError(f"{n} is not a uint64 timestamp or count")
    return n


# --- grouping ----------------------------------------------------------------------------------------


class _Groups:
    """Resource → scope → container, reusing entries for equal resources and scopes."""

    def __init__(self, resources: Any, scope_field: str) -> None:
        self._resources = resources
        self._scope_field = scope_field
        self._by_resource: dict[str, tuple[Any, dict[tuple[Any, Any], Any]]] = {}

    def scope(self, resource: dict[str, Any], name: Any, version: Any) -> Any:
        rkey = repr(sorted(resource.items(), key=lambda kv: str(kv[0]))) if resource else ""
        entry = self._by_resource.get(rkey)
        if entry is None:
            rx = self._resources.add()
            set_attrs(rx.resource.attributes, resource)
            entry = self._by_resource[rkey] = (rx, {})
        rx, scopes = entry
        skey = (name, version)
        sx = scopes.get(skey)
        if sx is None:
            sx = scopes[skey] = getattr(rx, self._scope_field).add()
            if name:
                sx.scope.name = str(name)
            if version:
                sx.scope.version = str(version)
        return sx


# --- spans ---------------------------------------------------------------------------------------


def _span(sx: Any, rec: Sequence[Any]) -> None:
    (name, trace_id, span_id, parent, start_ns, end_ns, kind, code, message, attrs, events, links,
     _scope, _version) = rec
    s = sx.spans.add()
    s.name = str(name or "")
    s.trace_id = _id(trace_id, 16)
    s.span_id = _id(span_id, 8)
    s.parent_span_id = _id(parent, 8)
    s.start_time_unix_nano = _u64(start_ns)
    s.end_time_unix_nano = _u64(end_ns)
    s.kind = int(kind) + 1 if kind is not None and 0 <= int(kind) <= 4 else 0
    s.status.code = int(code) if code is not None and 0 <= int(code) <= 2 else 0
    if message:
        s.status.message = str(message)
    set_attrs(s.attributes, attrs)
    for ev_name, ts, ev_attrs in events or ():
        ev = s.events.add()
        ev.name = str(ev_name or "")
        ev.time_unix_nano = _u64(ts)
        set_attrs(ev.attributes, ev_attrs)
    for lk_trace, lk_span, lk_attrs in links or ():
        lk = s.links.add()
        lk.trace_id = _id(lk_trace, 16)
        lk.span_id = _id(lk_span, 8)
        set_attrs(lk.attributes, lk_attrs)


# --- metrics -------------------------------------------------------------------------------------


def _number_point(dp: Any, value: Any) -> None:
    if value is None:
        dp.flags = _NO_RECORDED_VALUE
    elif isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX:
        dp.as_int = value
    else:
        dp.as_double = float(value)


def _hist_common(dp: Any, value: Any, extra: dict[str, Any]) -> None:
    dp.count = _u64(extra.get("count"))
    total = extra.get("sum", value)
    if total is not None:
        dp.sum = float(total)
    for key in ("min", "max"):
        if extra.get(key) is not None:
            setattr(dp, key, float(extra[key]))
    if value is None and total is None and not dp.count:
        dp.flags = _NO_RECORDED_VALUE


def _buckets(b: Any, spec: Any) -> None:
    if isinstance(spec, dict):
        b.offset = int(spec.get("offset") or 0)
        b.bucket_counts.extend(_u64(c) for c in spec.get("counts") or ())


def _metric_key(rec: Sequence[Any]) -> tuple[Any, ...]:
    name, description, unit, mtype, _t, _s, _v, _a, extra, _sc, _sv = rec
    extra = extra or {}
    temporality = _TEMPORALITY.get(extra.get("temporality"), 2) if mtype != "gauge" and mtype != "summary" else 0
    monotonic = bool(extra.get("monotonic")) if mtype == "sum" else False
    return (name, description or "", unit or "", mtype, temporality, monotonic)


_POINT_CLASS = {"gauge": NumberDataPoint, "sum": NumberDataPoint, "histogram": HistogramDataPoint,
                "exponential_histogram": ExponentialHistogramDataPoint, "summary": SummaryDataPoint}


def _data_point(mtype: str, time_ns: Any, start_ns: Any, value: Any, attrs: Any, extra: dict[str, Any]) -> Any:
    """A standalone data point, so a record that fails half-way leaves nothing behind."""
    dp = _POINT_CLASS[mtype]()
    dp.time_unix_nano = _u64(time_ns)
    dp.start_time_unix_nano = _u64(start_ns)
    set_attrs(dp.attributes, attrs)
    if mtype in ("gauge", "sum"):
        _number_point(dp, value)
    elif mtype == "histogram":
        _hist_common(dp, value, extra)
        dp.explicit_bounds.extend(float(b) for b in extra.get("bounds") or ())
        dp.bucket_counts.extend(_u64(c) for c in extra.get("counts") or ())
    elif mtype == "exponential_histogram":
        _hist_common(dp, value, extra)
        dp.scale = int(extra.get("scale") or 0)
        dp.zero_count = _u64(extra.get("zero_count"))
        dp.zero_threshold = float(extra.get("zero_threshold") or 0.0)
        _buckets(dp.positive, extra.get("positive"))
        _buckets(dp.negative, extra.get("negative"))
    else:  # summary
        dp.count = _u64(extra.get("count"))
        total = extra.get("sum", value)
        dp.sum = float(total or 0.0)
        for q in extra.get("quantiles") or ():
            qv = dp.quantile_values.add()
            qv.quantile = float(q["quantile"])
            qv.value = float(q["value"])
        if value is None and total is None:
            dp.flags = _NO_RECORDED_VALUE
    return dp


def _metric_point(metrics: dict[tuple[Any, ...], Any], sx: Any, rec: Sequence[Any]) -> None:
    name, description, unit, mtype, time_ns, start_ns, value, attrs, extra, _sc, _sv = rec
    if mtype not in _POINT_CLASS:
        raise ValueError(f"unknown metric type {mtype!r}")
    extra = extra or {}
    dp = _data_point(mtype, time_ns, start_ns, value, attrs, extra)
    key = (id(sx), *_metric_key(rec))
    m = metrics.get(key)
    if m is None:
        m = metrics[key] = sx.metrics.add()
        m.name = str(name)
        if description:
            m.description = str(description)
        if unit:
            m.unit = str(unit)
        data = getattr(m, mtype)
        data.SetInParent()
        if mtype in ("sum", "histogram", "exponential_histogram"):
            data.aggregation_temporality = key[5]
        if mtype == "sum":
            data.is_monotonic = key[6]
    getattr(m, mtype).data_points.append(dp)


# --- logs ----------------------------------------------------------------------------------------


def _log(sx: Any, rec: Sequence[Any]) -> None:
    (time_ns, observed_ns, severity_number, severity_text, body, attrs, trace_id, span_id, event_name,
     _scope, _version) = rec
    r = sx.log_records.add()
    r.time_unix_nano = _u64(time_ns)
    r.observed_time_unix_nano = _u64(observed_ns)
    r.severity_number = int(severity_number or 0)
    if severity_text:
        r.severity_text = str(severity_text)
    if body is not None:
        set_any(r.body, body)
    set_attrs(r.attributes, attrs)
    r.trace_id = _id(trace_id, 16)
    r.span_id = _id(span_id, 8)
    if event_name:
        r.event_name = str(event_name)


# --- requests ------------------------------------------------------------------------------------

_REQUEST: dict[str, tuple[type[Message], str, str, int]] = {
    # kind: (request class, resource field, scope field, arity of a record)
    "span": (ExportTraceServiceRequest, "resource_spans", "scope_spans", 14),
    "metric": (ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", 11),
    "log": (ExportLogsServiceRequest, "resource_logs", "scope_logs", 11),
}


def build_request(kind: str, batches: Iterable[BatchIn]) -> tuple[Message, int, int]:
    """(request, records encoded, records left out) for ``(resource, records)`` batches of one kind.

    Pure function; raises ValueError only for an unknown ``kind``. A record that does not fit its
    layout (wrong arity, bad id length, unknown metric type) is left out and counted.
    """
    spec = _REQUEST.get(kind)
    if spec is None:
        raise ValueError(f"unknown record kind {kind!r} (expected one of {', '.join(KINDS)})")
    cls, resource_field, scope_field, arity = spec
    req = cls()
    groups = _Groups(getattr(req, resource_field), scope_field)
    metrics: dict[tuple[Any, ...], Any] = {}
    good = bad = 0
    for resource, records in batches:
        for rec in records:
            try:
                if len(rec) != arity:
                    raise ValueError(f"{kind} record has {len(rec)} fields, expected {arity}")
                sx = groups.scope(resource or {}, rec[-2], rec[-1])
                if kind == "metric":
                    _metric_point(metrics, sx, rec)
                else:
                    container = sx.spans if kind == "span" else sx.log_records
                    n = len(container)
                    try:
                        (_span if kind == "span" else _log)(sx, rec)
                    except Exception:
                        del container[n:]  # the half-filled item must not be sent
                        raise
                good += 1
            except Exception:
                bad += 1
    return req, good, bad


def encode(kind: str, batches: Iterable[BatchIn]) -> Encoded:
    """Serialized request for ``batches`` of one kind; see :func:`build_request`."""
    req, good, bad = build_request(kind, batches)
    return Encoded(kind, req.SerializeToString() if good else b"", good, bad)
