"""OTLP decoders: ExportTrace/Metrics/LogsServiceRequest (protobuf or OTLP/JSON) → wire record tuples.

The output is exactly the SPAN / METRIC / LOG tuple layout of ``otel_telemetry.wire``, so data that
arrives over OTLP goes through the same ``schema.rows_from_batch`` mapping as data from ZeroMQ.

OTLP/JSON is parsed by turning it into the protobuf messages and then taking the protobuf path:
one mapping, and the same content gives the same tuples and the same ``uid_base`` whichever
encoding the client chose. ``json_format.ParseDict`` alone is wrong for OTLP/JSON because OTLP
encodes trace/span ids as hex where proto3 JSON expects base64 (a 32-hex-char trace id silently
becomes 24 bytes), so ids are rewritten hex → base64 before parsing.

Trace requests in protobuf are decoded by the optional C extension ``_fastotlp`` when it was built
and the ``speedups`` setting is on (``OTEL_TELEMETRY_SPEEDUPS=0`` turns it off): the same
DecodeResult as the path here, which stays the reference, except ``uid_base``, hashed from each
ResourceSpans as received instead of re-serialised (equal bodies still give equal uids).

Errors: a body that is not a request at all raises :class:`OtlpDecodeError`; a single span, data
point or log record that cannot be mapped is rejected and counted in :class:`DecodeResult` so a
receiver can answer with ``partial_success`` instead of failing the whole request.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .. import settings

try:
    from . import _fastotlp
except ImportError:  # not built (no compiler at install time): the protobuf runtime path below
    _fastotlp = None  # type: ignore[assignment]

Batch = tuple[dict[str, Any], list[tuple[Any, ...]], bytes]

# OTLP numbers span kinds UNSPECIFIED=0, INTERNAL=1 .. CONSUMER=5; the SDK (and our schema) uses
# INTERNAL=0 .. CONSUMER=4. Unknown future values fall back to internal rather than failing.
_KIND = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
_NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE_MASK
_HEX = re.compile(r"[0-9a-fA-F]*")


class OtlpDecodeError(ValueError):
    """The body as a whole is not a decodable OTLP request (answer 400, never retried)."""

    def __init__(self, message: str) -> None:
        # Parser messages can quote the offending input; keep what reaches a response or log short.
        super().__init__(message[:500])


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """``batches``: one ``(resource_attrs, records, uid_base)`` per Resource* entry, in order.

    ``rejected`` counts spans / data points / log records dropped individually (the unit OTLP's
    ``partial_success`` reports); ``error_message`` describes the first of them.
    """

    kind: str  # span | metric | log, the ``kind`` argument of schema.rows_from_batch
    batches: list[Batch]
    rejected: int = 0
    error_message: str | None = None


class _Reject(Exception):
    """One item cannot be mapped; it is dropped and counted, the rest of the request is kept."""


class _Acc:
    __slots__ = ("rejected", "first")

    def __init__(self) -> None:
        self.rejected = 0
        self.first: str | None = None

    def reject(self, count: int, where: str, exc: BaseException) -> None:
        self.rejected += count
        if self.first is None:
            detail = str(exc) or type(exc).__name__
            self.first = f"{where}: {detail}"[:500]


# --- protobuf messages → Python values and tuples -------------------------------------------------


def _any(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()  # JSON-safe and matches how ids are shown
    return getattr(v, which)


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def _attrs(kvs: Any) -> dict[str, Any]:
    # Scalars inline (most values): one call less per attribute, on every span of every request.
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        out[kv.key] = getattr(v, which) if which in _SCALARS else _any(v)
    return out


def _id(raw: bytes, size: int, what: str) -> bytes:
    if len(raw) not in (0, size):
        raise _Reject(f"{what} has {len(raw)} bytes, expected {size}")
    return raw


def _span(s: Any, scope: str | None, version: str | None) -> tuple[Any, ...]:
    trace_id = _id(s.trace_id, 16, "trace_id")
    span_id = _id(s.span_id, 8, "span_id")
    parent = _id(s.parent_span_id, 8, "parent_span_id") or None
    events = [(e.name, e.time_unix_nano, _attrs(e.attributes)) for e in s.events]
    links = [(_id(lk.trace_id, 16, "link trace_id"), _id(lk.span_id, 8, "link span_id"),
              _attrs(lk.attributes)) for lk in s.links]
    code = s.status.code
    return (s.name, trace_id, span_id, parent, s.start_time_unix_nano, s.end_time_unix_nano,
            _KIND.get(s.kind, 0), code if 0 <= code <= 2 else 0, s.status.message or None,
            _attrs(s.attributes), events, links, scope, version)


def _map_spans(sx: Any, scope: str | None, version: str | None, acc: _Acc, where: str) -> list[Any]:
    out = []
    for i, s in enumerate(sx.spans):
        try:
            out.append(_span(s, scope, version))
        except Exception as exc:  # one bad span must not cost the request
            acc.reject(1, f"{where}.spans[{i}]", exc)
    return out


def _opt(dp: Any, name: str) -> float | None:
    return getattr(dp, name) if dp.HasField(name) else None


def _number_value(dp: Any) -> float | int | None:
    if dp.flags & _NO_RECORDED_VALUE:
        return None
    which = dp.WhichOneof("value")
    return getattr(dp, which) if which else None


def _buckets(b: Any) -> dict[str, Any]:
    return {"offset": b.offset, "counts": list(b.bucket_counts)}


def _point(mtype: str, data: Any, dp: Any) -> tuple[Any, dict[str, Any]]:
    """(value, extra) of one data point."""
    if mtype == "gauge":
        return _number_value(dp), {}
    if mtype == "sum":
        return _number_value(dp), {"monotonic": data.is_monotonic,
                                   "temporality": data.aggregation_temporality}
    if mtype == "summary":
        extra = {"count": dp.count, "sum": dp.sum,
                 "quantiles": [{"quantile": q.quantile, "value": q.value} for q in dp.quantile_values]}
        return (None if dp.flags & _NO_RECORDED_VALUE else dp.sum), extra
    total = _opt(dp, "sum")
    extra = {"count": dp.count, "sum": total, "min": _opt(dp, "min"), "max": _opt(dp, "max"),
             "temporality": data.aggregation_temporality}
    if mtype == "histogram":
        extra["bounds"] = list(dp.explicit_bounds)
        extra["counts"] = list(dp.bucket_counts)
    else:  # exponential_histogram
        extra.update(scale=dp.scale, zero_count=dp.zero_count, zero_threshold=dp.zero_threshold,
                     positive=_buckets(dp.positive), negative=_buckets(dp.negative))
    return (None if dp.flags & _NO_RECORDED_VALUE else total), extra


def _map_metrics(sx: Any, scope: str | None, version: str | None, acc: _Acc, where: str) -> list[Any]:
    out = []
    for i, m in enumerate(sx.metrics):
        mtype = m.WhichOneof("data")
        if mtype is None:  # a metric without data carries nothing to store
            continue
        data = getattr(m, mtype)
        for j, dp in enumerate(data.data_points):
            try:
                value, extra = _point(mtype, data, dp)
                out.append((m.name, m.description, m.unit, mtype, dp.time_unix_nano,
                            dp.start_time_unix_nano, value, _attrs(dp.attributes), extra, scope, version))
            except Exception as exc:
                acc.reject(1, f"{where}.metrics[{i}].data_points[{j}]", exc)
    return out


def _log(r: Any, scope: str | None, version: str | None) -> tuple[Any, ...]:
    trace_id = _id(r.trace_id, 16, "trace_id") or None
    span_id = _id(r.span_id, 8, "span_id") or None
    body = _any(r.body) if r.HasField("body") else None
    return (r.time_unix_nano, r.observed_time_unix_nano, r.severity_number, r.severity_text or None,
            body, _attrs(r.attributes), trace_id, span_id, r.event_name or None, scope, version)


def _map_logs(sx: Any, scope: str | None, version: str | None, acc: _Acc, where: str) -> list[Any]:
    out = []
    for i, r in enumerate(sx.log_records):
        try:
            out.append(_log(r, scope, version))
        except Exception as exc:
            acc.reject(1, f"{where}.log_records[{i}]", exc)
    return out


# --- OTLP/JSON id rewriting ----------------------------------------------------------------------


def _b64_ids(obj: Any, keys: tuple[str, ...]) -> Any:
    """Copy of ``obj`` with hex ids at ``keys`` rewritten to the base64 ParseDict expects."""
    if not isinstance(obj, dict):
        return obj  # ParseDict reports the wrong type
    out = obj
    for key in keys:
        v = obj.get(key)
        if isinstance(v, str):
            if len(v) % 2 or not _HEX.fullmatch(v):
                raise _Reject(f"{key} {v[:40]!r} is not a hex id")
            if out is obj:
                out = dict(obj)
            out[key] = base64.b64encode(bytes.fromhex(v)).decode()
    return out


_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id")
_SPAN_ID_KEYS = (*_ID_KEYS, "parentSpanId", "parent_span_id")
_METRIC_DATA_KEYS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram",
                     "summary")


def _fix_span(item: Any) -> Any:
    out = _b64_ids(item, _SPAN_ID_KEYS)
    if isinstance(out, dict) and isinstance(out.get("links"), list):
        out = {**out, "links": [_b64_ids(lk, _ID_KEYS) for lk in out["links"]]}
    return out


def _point_lists(item: Any) -> Iterator[tuple[str, dict[str, Any], str, list[Any]]]:
    """(data key, data object, data points key, data points) of a JSON metric."""
    if isinstance(item, dict):
        for key in _METRIC_DATA_KEYS:
            data = item.get(key)
            if isinstance(data, dict):
                pkey = "dataPoints" if "dataPoints" in data else "data_points"
                if isinstance(data.get(pkey), list):
                    yield key, data, pkey, data[pkey]


def _fix_metric(item: Any) -> Any:
    """Exemplars are the only place metrics carry ids."""
    out = item
    for key, data, pkey, points in _point_lists(item):
        fixed = [{**dp, "exemplars": [_b64_ids(ex, _ID_KEYS) for ex in dp["exemplars"]]}
                 if isinstance(dp, dict) and isinstance(dp.get("exemplars"), list) else dp
                 for dp in points]
        out = {**out, key: {**data, pkey: fixed}}
    return out


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w.title() for w in rest)


def _get(obj: Mapping[str, Any], snake: str) -> Any:
    value = obj.get(_camel(snake))
    return obj.get(snake) if value is None else value


# --- signal plumbing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signal:
    kind: str
    request: type[Message]
    resource_field: str
    scope_field: str
    item_field: str
    mapper: Callable[[Any, str | None, str | None, _Acc, str], list[Any]]
    fix_ids: Callable[[Any], Any]
    item_count: Callable[[Any], int]  # what rejecting a JSON item costs in partial_success units


_TRACES = _Signal("span", ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans",
                  _map_spans, _fix_span, lambda item: 1)
_METRICS = _Signal("metric", ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics",
                   _map_metrics, _fix_metric,
                   lambda item: max(1, sum(len(p[3]) for p in _point_lists(item))))
_LOGS = _Signal("log", ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records",
                _map_logs, lambda item: _b64_ids(item, _ID_KEYS), lambda item: 1)
_SIGNALS = {"traces": _TRACES, "metrics": _METRICS, "logs": _LOGS}


def _map_request(sig: _Signal, resources: Any, acc: _Acc) -> DecodeResult:
    batches: list[Batch] = []
    for ri, rx in enumerate(resources):
        uid_base = _uid_base(sig.kind, ri, rx.SerializeToString(deterministic=True))
        records: list[Any] = []
        for si, sx in enumerate(getattr(rx, sig.scope_field)):
            where = f"{sig.resource_field}[{ri}].{sig.scope_field}[{si}]"
            records.extend(sig.mapper(sx, sx.scope.name or None, sx.scope.version or None, acc, where))
        batches.append((_attrs(rx.resource.attributes), records, uid_base))
    return DecodeResult(sig.kind, batches, acc.rejected, acc.first)


def _speedups() -> bool:
    """The ``speedups`` setting (OTEL_TELEMETRY_SPEEDUPS, default on)."""
    try:
        return bool(settings.resolve("speedups"))
    except ValueError:  # a value that does not parse: the reference path, which is always right
        return False


def _uid_base(kind: str, index: int, raw: Any) -> bytes:
    # Content hash, so a re-sent request maps to the same uids and the unique index drops it.
    # The C decoder hashes the ResourceSpans bytes as received (no re-serialisation there): equal
    # bodies give equal uid_base, but not the one _map_request gives for the same body.
    h = hashlib.blake2b(kind.encode() + index.to_bytes(4, "big"), digest_size=16)
    h.update(raw)
    return h.digest()


def _decode_traces_c(body: bytes) -> DecodeResult:
    """``_fastotlp.decode_traces``: the DecodeResult of ``_decode_pb(_TRACES, body)``."""
    try:
        raw, rejected, first = _fastotlp.decode_traces(body)
    except ValueError as exc:  # malformed wire format, bad UTF-8, too deep, only unknown fields
        raise OtlpDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    view = memoryview(body).cast("B")  # slices of it hash without copying
    batches = [(attrs, records, _uid_base("span", ri, view[start:end]))
               for ri, (attrs, records, start, end) in enumerate(raw)]
    return DecodeResult("span", batches, rejected, first)


def _decode_pb(sig: _Signal, body: bytes) -> DecodeResult:
    if sig is _TRACES and _fastotlp is not None and _speedups():
        return _decode_traces_c(body)
    name = sig.request.DESCRIPTOR.name
    try:
        req = sig.request.FromString(bytes(body))
    except Exception as exc:
        raise OtlpDecodeError(f"body is not a protobuf {name}: {exc}") from None
    resources = getattr(req, sig.resource_field)
    if body and not resources:
        # Only unknown fields: garbage that happens to parse, not a request from a newer client.
        raise OtlpDecodeError(f"body is not a protobuf {name}: no {sig.resource_field}")
    return _map_request(sig, resources, _Acc())


def _parse(obj: dict[str, Any], msg: Message) -> None:
    json_format.ParseDict(obj, msg, ignore_unknown_fields=True)


def _list(obj: Mapping[str, Any], snake: str, where: str) -> list[Any]:
    value = _get(obj, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{where}.{_camel(snake)} is not an array")
    return value


def _without(obj: dict[str, Any], snake: str) -> dict[str, Any]:
    drop = (snake, _camel(snake))
    return {k: v for k, v in obj.items() if k not in drop}


def _decode_json(sig: _Signal, body: bytes) -> DecodeResult:
    name = sig.request.DESCRIPTOR.name
    try:
        doc = orjson.loads(body)
    except Exception as exc:
        raise OtlpDecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OtlpDecodeError(f"OTLP/JSON {name} must be an object")
    acc = _Acc()
    req = sig.request()
    resources = getattr(req, sig.resource_field)
    rf, sf, itf = _camel(sig.resource_field), _camel(sig.scope_field), _camel(sig.item_field)
    for ri, entry in enumerate(_list(doc, sig.resource_field, "$")):
        where = f"{rf}[{ri}]"
        if not isinstance(entry, dict):
            raise OtlpDecodeError(f"{where} is not an object")
        scopes = _list(entry, sig.scope_field, where)
        rx = resources.add()
        try:
            _parse(_without(entry, sig.scope_field), rx)
        except Exception as exc:
            raise OtlpDecodeError(f"{where}: {exc}") from None
        for si, sentry in enumerate(scopes):
            swhere = f"{where}.{sf}[{si}]"
            if not isinstance(sentry, dict):
                raise OtlpDecodeError(f"{swhere} is not an object")
            items = _list(sentry, sig.item_field, swhere)
            sx = getattr(rx, sig.scope_field).add()
            try:
                _parse(_without(sentry, sig.item_field), sx)
            except Exception as exc:
                raise OtlpDecodeError(f"{swhere}: {exc}") from None
            container = getattr(sx, sig.item_field)
            for ii, item in enumerate(items):
                n = len(container)
                try:
                    _parse(sig.fix_ids(item), container.add())
                except Exception as exc:  # ParseError, _Reject, anything odd in one item
                    del container[n:]  # ParseDict may have filled part of it
                    acc.reject(sig.item_count(item), f"{swhere}.{itf}[{ii}]", exc)
    return _map_request(sig, resources, acc)


def _guard(fn: Callable[[_Signal, bytes], DecodeResult], sig: _Signal, body: bytes) -> DecodeResult:
    # The contract is "OtlpDecodeError or a result": nothing else may escape to the receiver.
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise OtlpDecodeError(f"body must be bytes, not {type(body).__name__}")
    try:
        return fn(sig, body)
    except OtlpDecodeError:
        raise
    except Exception as exc:  # e.g. RecursionError from absurdly nested input
        raise OtlpDecodeError(f"cannot decode {sig.request.DESCRIPTOR.name}: "
                              f"{type(exc).__name__}: {exc}") from None


def decode_traces_pb(body: bytes) -> DecodeResult:
    """In C (``_fastotlp``) when built and ``speedups`` is on: the same result, but ``uid_base`` is
    hashed from each ResourceSpans as received, so equal bodies give equal uids within a path."""
    return _guard(_decode_pb, _TRACES, body)


def decode_metrics_pb(body: bytes) -> DecodeResult:
    return _guard(_decode_pb, _METRICS, body)


def decode_logs_pb(body: bytes) -> DecodeResult:
    return _guard(_decode_pb, _LOGS, body)


def decode_traces_json(body: bytes) -> DecodeResult:
    return _guard(_decode_json, _TRACES, body)


def decode_metrics_json(body: bytes) -> DecodeResult:
    return _guard(_decode_json, _METRICS, body)


def decode_logs_json(body: bytes) -> DecodeResult:
    return _guard(_decode_json, _LOGS, body)


def decode(signal: str, body: bytes, *, json: bool = False) -> DecodeResult:
    """Dispatch on ``signal`` (traces | metrics | logs, as in /v1/<signal>) and encoding."""
    sig = _SIGNALS.get(signal)
    if sig is None:
        raise OtlpDecodeError(f"unknown OTLP signal {signal!r}")
    return _guard(_decode_json if json else _decode_pb, sig, body)

