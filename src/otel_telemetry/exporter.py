"""OTel SDK plug-ins that ship spans, metrics and logs over the ZeroMQ transport.

The span processor's ``on_end`` only appends the span to a bounded deque; turning it into a
compact tuple, choosing its category topic and msgpack encoding all happen on the transport's
sender thread. OTLP encoding is left to the collector (FINDINGS §1: ~33 µs/span in Python).

Redaction (``otel_telemetry.redact``, on by default) runs in the converter too, on the sender
thread, before msgpack encoding: every record, its resource and its topic's component. A record
the redactor fails on is dropped and counted (``redaction_error``), never sent as it was.

Every class here works with zero constructor arguments and reads its ``OTEL_TELEMETRY_*``
settings from the environment, so ``opentelemetry-instrument`` can build it from an entry point.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from . import categories as cats
from . import settings, wire
from .redact import RedactionConfig, Redactor
from .redact_config import app_config
from .transport import Dropped, Prepared, Transport

log = logging.getLogger("otel_telemetry.exporter")

_EMPTY: dict[str, Any] = {}
_MARKER = re.compile(r"\[REDACTED:([^\]]*)\]")
# Keyed by id(): enum members hash through Python code, id() does not.
_KIND = {id(k): k.value for k in SpanKind}
_CODE = {id(c): c.value for c in StatusCode}


# Scopes and resources seen by ``snapshot``, by id(): pinned so an id is never reused while we
# hold it. Both are few and live as long as their provider.
_PINNED: dict[int, Any] = {}
SNAPSHOT_LEN = 14


def _pin(obj: Any) -> int:
    key = id(obj)
    if key not in _PINNED:
        _PINNED[key] = obj
    return key


def snapshot(span: ReadableSpan) -> tuple[Any, ...]:
    """A flat tuple of an ended span, made on the thread that ends it: must not block or raise.

    The tuple holds only ints, strings, None and the span's own attribute dict (untracked by
    the garbage collector when its values are plain), so the SDK span dies right away instead
    of lingering in our queue and being promoted through the GC generations — which cost more
    than all the copying here. Private SDK fields are read directly; :func:`snapshot_public`
    is the fallback if they change.
    """
    try:
        ctx = span._context
        parent = span._parent
        status = span._status
        attrs = span._attributes._dict
        events = span._events._dq
        links = span._links._dq
        scope, res = span._instrumentation_scope, span._resource
        scope_id, res_id = id(scope), id(res)
        if scope_id not in _PINNED or res_id not in _PINNED:
            _pin(scope), _pin(res)
        return (
            span._name, ctx.trace_id, ctx.span_id, parent.span_id if parent is not None else None,
            span._start_time, span._end_time, _KIND[id(span._kind)], _CODE[id(status._status_code)],
            status._description, attrs,
            [(e.name, e.timestamp, dict(e.attributes or _EMPTY)) for e in events] if events else None,
            [(lk.context.trace_id, lk.context.span_id, dict(lk.attributes or _EMPTY)) for lk in links]
            if links else None,
            scope_id, res_id,
        )
    except (AttributeError, KeyError, TypeError):
        return snapshot_public(span)


def snapshot_public(span: ReadableSpan) -> tuple[Any, ...]:
    """Same tuple as :func:`snapshot` through the public ReadableSpan API only."""
    ctx, parent = span.context, span.parent
    return (
        span.name, ctx.trace_id, ctx.span_id, parent.span_id if parent is not None else None,
        span.start_time, span.end_time, span.kind.value, span.status.status_code.value,
        span.status.description, dict(span.attributes or _EMPTY),
        [(e.name, e.timestamp, dict(e.attributes or _EMPTY)) for e in span.events] or None,
        [(lk.context.trace_id, lk.context.span_id, dict(lk.attributes or _EMPTY)) for lk in span.links] or None,
        _pin(span.instrumentation_scope), _pin(span.resource),
    )


class _Converter:
    """Turns queued SDK objects into (redacted) wire tuples. Runs on the sender thread only."""

    def __init__(self, rules: Sequence[cats.Rule] = (), redactor: Redactor | None = None) -> None:
        self.rules = tuple(rules)
        self.redactor = redactor if redactor is not None and redactor.enabled else None
        self._resources: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._metric_resources: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._topics: dict[tuple[str, str], bytes] = {}
        self._scopes: dict[tuple[int, int], tuple[str | None, str | None, dict[str, Any], str]] = {}

    def redaction_counts(self) -> dict[str, int]:
        """Replacements per rule so far (counts only, never values); any thread."""
        return self.redactor.counts() if self.redactor is not None else {}

    def resource(self, res: Any) -> dict[str, Any]:
        key = id(res)
        hit = self._resources.get(key)
        if hit is None or hit[0] is not res:
            attrs = dict(res.attributes) if res is not None else {}
            if self.redactor is not None:
                attrs = self.redactor.redact_resource(attrs)  # once per resource, not per record
            hit = (res, attrs)
            self._resources[key] = hit
        return hit[1]

    def topic(self, category: str, component: str) -> bytes:
        key = (category, component)
        t = self._topics.get(key)
        if t is None:
            comp = str(component)
            if self.redactor is not None:
                # Before topic_for hides an '@' as '_'; a marker becomes "redacted-<rule>" there.
                red = self.redactor.redact_text(comp)
                if red is not comp:
                    comp = _MARKER.sub(lambda m: "redacted-" + m.group(1).lower(), red)
            t = cats.topic_for(category, comp).encode()
            if len(self._topics) < 4096:
                self._topics[key] = t
        return t

    def __call__(self, item: Any) -> Prepared:
        return self.convert(item, True)

    def _redacted(self, category: str, item: Prepared) -> Prepared:
        """``item`` with its record, resource and topic redacted; if the redactor fails, the
        record is dropped and counted (``redaction_error``), never sent as it was."""
        red = self.redactor
        assert red is not None
        _, topic, kind, resource, rec = item
        try:
            if kind == wire.KIND_SPANS:
                rec = red.redact_span(rec)
            elif kind == wire.KIND_LOGS:
                rec = red.redact_log(rec)
            else:
                rec = red.redact_metric(rec)
                resource = self._metric_resource(resource)
        except Exception as exc:
            log.debug("record dropped: redaction failed (%s)", type(exc).__name__)
            raise Dropped(category, "redaction_error") from None
        return category, topic, kind, resource, rec

    def convert(self, item: Any, redact: bool) -> Prepared:
        if type(item) is tuple:
            if len(item) == SNAPSHOT_LEN:
                return self.span(item, redact)
            return self.metric(item, redact)  # type: ignore[arg-type]  # a prepared metric point
        if isinstance(item, (ReadWriteLogRecord, ReadableLogRecord)):
            return self.log(item, redact)
        raise TypeError(f"cannot send {type(item).__name__}")

    def metric(self, item: Prepared, redact: bool) -> Prepared:
        if self.redactor is None or not redact:
            return item
        category, _, kind, resource, rec = item
        attrs = rec[7] or _EMPTY
        component = attrs.get("telemetry.component") or rec[9] or resource.get("service.name") or "unknown"
        return self._redacted(category, (category, self.topic(category, str(component)), kind, resource, rec))

    def _metric_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The redacted resource of one metric export, the same dict for all its points (the
        transport batches by resource identity); the original is held so its id stays unique."""
        hit = self._metric_resources.get(id(resource))
        if hit is None or hit[0] is not resource:
            if len(self._metric_resources) >= 64:
                self._metric_resources.clear()
            hit = (resource, self.redactor.redact_resource(resource))  # type: ignore[union-attr]
            self._metric_resources[id(resource)] = hit
        return hit[1]

    def _scope_info(self, scope_id: int, res_id: int) -> tuple[str | None, str | None, dict[str, Any], str]:
        key = (scope_id, res_id)
        hit = self._scopes.get(key)
        if hit is None:
            scope, res = _PINNED.get(scope_id), _PINNED.get(res_id)
            resource = self.resource(res)
            name = scope.name if scope is not None else None
            hit = (name, scope.version if scope is not None else None, resource,
                   name or str(resource.get("service.name") or "unknown"))
            self._scopes[key] = hit
        return hit

    def span(self, snap: tuple[Any, ...], redact: bool = True) -> Prepared:
        (name, trace_id, span_id, parent_id, start, end, kind, code, description, attrs, events, links,
         scope_id, res_id) = snap
        has_exc = events is not None and any(e[0] == "exception" for e in events)
        if links is not None:
            links = [(t.to_bytes(16, "big"), s.to_bytes(8, "big"), a) for t, s, a in links]
        scope_name, scope_version, resource, default_component = self._scope_info(scope_id, res_id)
        category, _ = cats.categorise_span(name, kind, code, attrs, has_exc, self.rules)
        component = attrs.get("telemetry.component") or default_component
        rec = (
            name, trace_id.to_bytes(16, "big"), span_id.to_bytes(8, "big"),
            parent_id.to_bytes(8, "big") if parent_id is not None else None,
            start, end, kind, code, description, attrs, events, links, scope_name, scope_version,
        )
        out = category, self.topic(category, component), wire.KIND_SPANS, resource, rec
        return self._redacted(category, out) if redact and self.redactor is not None else out

    def log(self, item: ReadWriteLogRecord | ReadableLogRecord, redact: bool = True) -> Prepared:
        lr = item.log_record
        attrs = dict(lr.attributes or _EMPTY)
        sev = lr.severity_number.value if lr.severity_number is not None else 0
        event_name = getattr(lr, "event_name", None)
        scope = item.instrumentation_scope
        scope_name = scope.name if scope is not None else None
        resource = self.resource(item.resource)
        category, _ = cats.categorise_log(sev, attrs, event_name or "", self.rules)
        component = attrs.get("telemetry.component") or scope_name or resource.get("service.name") or "unknown"
        body = lr.body
        if body is not None and not isinstance(body, (str, int, float, bool, list, dict, bytes)):
            body = str(body)
        rec = (
            lr.timestamp, lr.observed_timestamp, sev, lr.severity_text, body, attrs,
            lr.trace_id.to_bytes(16, "big") if lr.trace_id else None,
            lr.span_id.to_bytes(8, "big") if lr.span_id else None,
            event_name, scope_name, scope.version if scope is not None else None,
        )
        out = category, self.topic(category, str(component)), wire.KIND_LOGS, resource, rec
        return self._redacted(category, out) if redact and self.redactor is not None else out

    def drop_category(self, item: Any) -> str:
        """Category of an item dropped on an app thread (slow path only)."""
        try:
            return self.convert(item, False)[0]
        except Exception:
            return "unknown"


_shared_lock = threading.Lock()
_shared: dict[str, Transport] = {}


def get_transport(endpoint: str | None = None, rules: Sequence[cats.Rule] = (),
                  redaction: RedactionConfig | bool | None = None, **options: Any) -> Transport:
    """The process-wide transport for ``endpoint`` (one socket, one sender thread per endpoint).

    ``rules`` and ``redaction`` (``RedactionConfig``, ``False`` = off, ``None`` = the
    ``OTEL_TELEMETRY_REDACT*`` settings, on by default) apply when the transport is created."""
    ep = settings.resolve("endpoint", endpoint)
    with _shared_lock:
        t = _shared.get(ep)
        if t is None or t._stopping:
            conv = _Converter(rules, Redactor(app_config(redaction)))
            t = Transport(
                ep, conv,
                queue_size=settings.resolve("queue_size", options.get("queue_size")),
                batch_size=settings.resolve("batch_size", options.get("batch_size")),
                join_timeout=settings.resolve("join_timeout", options.get("join_timeout")),
                send_hwm=settings.resolve("send_hwm", options.get("send_hwm")),
                curve_server_key=settings.resolve("curve_server_key", options.get("curve_server_key")),
                curve_client_key_file=settings.resolve("curve_client_key_file", options.get("curve_client_key_file")),
                categorise_drop=conv.drop_category, redaction_counts=conv.redaction_counts,
            )
            _shared[ep] = t
        t.start()
        return t


class _TransportUser:
    """Shared shutdown/flush for the SDK plug-ins (any thread; bounded by the timeout).

    The span, metric and log plug-ins of one process share one transport, and the SDK shuts
    its providers down one by one at exit; so each plug-in holds a reference and only the last
    one to shut down closes the transport — the others flush it.
    """

    transport: Transport
    _released = False

    def _attach(self, transport: Transport) -> None:
        self.transport = transport
        transport.acquire()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._released:
            return
        self._released = True
        # The metric reader passes its remaining time as ``timeout`` (milliseconds).
        self.transport.release(float(kwargs.get("timeout", timeout_millis)) / 1000.0)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return self.transport.force_flush(timeout_millis / 1000.0)


class ZmqSpanProcessor(_TransportUser, SpanProcessor):
    """Publishes finished spans. ``on_end`` runs on the thread that ends the span: it only
    appends to a bounded queue and never blocks or raises."""

    def __init__(self, endpoint: str | None = None, transport: Transport | None = None, **options: Any):
        self._attach(transport or get_transport(endpoint, **options))
        self._enqueue = self.transport.enqueue

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._enqueue(snapshot(span))
        except Exception:  # never into the app; counted like any other loss
            self.transport.count_drop("unknown", "encode_error")
            log.debug("could not snapshot a span", exc_info=True)


class ZmqSpanExporter(_TransportUser, SpanExporter):
    """SpanExporter form for ``OTEL_TRACES_EXPORTER=zmq`` (the SDK wraps it in a batch processor)."""

    def __init__(self, endpoint: str | None = None, **options: Any) -> None:
        self._attach(get_transport(endpoint, **options))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.transport.enqueue(snapshot(span))
        return SpanExportResult.SUCCESS


class ZmqLogRecordProcessor(_TransportUser, LogRecordProcessor):
    """``on_emit`` runs on the logging thread: append only, never block or raise."""

    def __init__(self, endpoint: str | None = None, transport: Transport | None = None, **options: Any):
        self._attach(transport or get_transport(endpoint, **options))

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.transport.enqueue(log_record)


class ZmqLogExporter(_TransportUser, LogRecordExporter):
    """LogRecordExporter form for ``OTEL_LOGS_EXPORTER=zmq``."""

    def __init__(self, endpoint: str | None = None, **options: Any) -> None:
        self._attach(get_transport(endpoint, **options))

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        for rec in batch:
            self.transport.enqueue(rec)
        return LogRecordExportResult.SUCCESS


_TEMPORALITY = {AggregationTemporality.DELTA: "delta", AggregationTemporality.CUMULATIVE: "cumulative"}


class ZmqMetricExporter(_TransportUser, MetricExporter):
    """Push exporter for a PeriodicExportingMetricReader; ``export`` runs on the reader's thread,
    so converting points there costs the app nothing."""

    def __init__(self, endpoint: str | None = None, rules: Sequence[cats.Rule] = (), **options: Any):
        super().__init__()
        self._attach(get_transport(endpoint, **options))
        self._conv = _Converter(rules)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            for rm in metrics_data.resource_metrics:
                resource = dict(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        for item in self._points(m, sm.scope, resource):
                            self.transport.enqueue(item)
        except Exception:
            log.debug("metric conversion failed", exc_info=True)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def _points(self, m: Any, scope: Any, resource: dict[str, Any]) -> list[Prepared]:
        data = m.data
        mtype = type(data).__name__
        mtype = {"Gauge": "gauge", "Sum": "sum", "Histogram": "histogram",
                 "ExponentialHistogram": "exponential_histogram"}.get(mtype, mtype.lower())
        extra_common: dict[str, Any] = {}
        if mtype == "sum":
            extra_common = {"monotonic": data.is_monotonic,
                            "temporality": _TEMPORALITY.get(data.aggregation_temporality)}
        out: list[Prepared] = []
        for p in data.data_points:
            attrs = dict(p.attributes or _EMPTY)
            extra = dict(extra_common)
            if mtype == "histogram":
                value = p.sum
                extra.update(count=p.count, sum=p.sum, min=p.min, max=p.max,
                             bounds=list(p.explicit_bounds), counts=list(p.bucket_counts))
            elif mtype == "exponential_histogram":
                value = p.sum
                extra.update(count=p.count, sum=p.sum, min=p.min, max=p.max, scale=p.scale,
                             zero_count=p.zero_count)
            else:
                value = p.value
            category, _ = cats.categorise_metric(m.name, attrs, self._conv.rules)
            component = attrs.get("telemetry.component") or scope.name or resource.get("service.name") or "unknown"
            rec = (m.name, m.description or None, m.unit or None, mtype, p.time_unix_nano,
                   getattr(p, "start_time_unix_nano", None), value, attrs, extra, scope.name, scope.version)
            out.append((category, self._conv.topic(category, str(component)), wire.KIND_METRICS, resource, rec))
        return out

