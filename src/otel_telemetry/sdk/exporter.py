"""OTel SDK plug-ins that ship spans, metrics and logs over the ZeroMQ transport.

The span processor's ``on_end`` only appends a flat snapshot of the span to a bounded deque;
choosing its category topic, redaction and msgpack encoding all happen on the transport's
sender thread (``convert``, ``span_plans``). OTLP encoding is left to the collector
(FINDINGS §1: ~33 µs/span in Python).

Redaction (``otel_telemetry.redact``, on by default) runs in the converter, on the sender
thread, before msgpack encoding: every record, its resource and its topic's component. A record
the redactor fails on is dropped and counted (``redaction_error``), never sent as it was.

Every class here works with zero constructor arguments and reads its ``OTEL_TELEMETRY_*``
settings from the environment, so ``opentelemetry-instrument`` can build it from an entry point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .. import categories as cats
from .. import settings, wire
from ..auth import endpoint_stays_on_device
from ..redact.config import app_config
from ..redact.redactor import RedactionConfig, Redactor
from .convert import _Converter
from .sessions import _session, tag_span
from .snapshot import EMPTY, snapshot
from .span_plans import speedups
from .transport import Prepared, Transport
from .volume import attach
from .volume import resolve as resolve_volume

log = logging.getLogger("otel_telemetry.sdk.exporter")

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
            redactor = Redactor(app_config(redaction))
            at = redaction_site(ep, redactor.enabled, options.get("redact_in_app"))
            volume = resolve_volume(options.get("min_level"), options.get("sampling"), options.get("sample_logs"))
            conv = _Converter(rules, redactor, records=at == "app", volume=volume)
            t = Transport(
                ep, conv,
                queue_size=settings.resolve("queue_size", options.get("queue_size")),
                batch_size=settings.resolve("batch_size", options.get("batch_size")),
                join_timeout=settings.resolve("join_timeout", options.get("join_timeout")),
                send_hwm=settings.resolve("send_hwm", options.get("send_hwm")),
                replay_buffer=settings.resolve("replay_buffer", options.get("replay_buffer")),
                curve_server_key=settings.resolve("curve_server_key", options.get("curve_server_key")),
                curve_client_key_file=settings.resolve("curve_client_key_file", options.get("curve_client_key_file")),
                categorise_drop=conv.drop_category, redaction_counts=conv.redaction_counts,
                span_plans=conv.plans, redaction_site=at,
                live_spans=settings.resolve("live_spans", options.get("live_spans")),
            )
            t.volume = volume
            attach(t.count_drop)  # a sampler made before this transport counts through it
            _shared[ep] = t
        t.start()
        return t


def redaction_site(endpoint: str, enabled: bool, redact_in_app: str | None = None) -> str:
    """Where this app's records are redacted: ``"app"`` (before they leave the process: the
    endpoint may cross a network, or ``OTEL_TELEMETRY_REDACT_IN_APP=always``), ``"collector"`` (the
    endpoint stays on this device: the collector, another process with its own core, redacts every
    frame this app flags) or ``"off"`` (redaction switched off)."""
    if not enabled:
        return "off"
    if settings.resolve("redact_in_app", redact_in_app) == "always" or not endpoint_stays_on_device(endpoint):
        return "app"
    return "collector"


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


def _not_taken(span: ReadableSpan) -> bool:
    return False


class _SpanPublisher(_TransportUser):
    """``publish`` runs on the thread that ends a span: never blocks or raises. A span of a shape
    seen before with known-clean values is converted right there (``span_plans``); any other is
    snapshotted for the sender thread."""

    def _attach_spans(self, transport: Transport) -> None:
        self._attach(transport)
        self._enqueue = transport.enqueue
        # The C fast path (span_plans.ender) if built, else the Python one: ``end`` never raises
        # in C; the C ``on_end`` is end-or-snapshot with no Python frame, installed as the
        # instance's on_end by the span processors.
        plans = transport.span_plans
        ender = plans.ender(self._snapshot) if plans is not None else None
        self._fast_end = ender.end if ender is not None else plans.end if plans is not None else _not_taken
        self._c_on_end = ender.on_end if ender is not None else None

    def publish(self, span: ReadableSpan) -> None:
        try:
            if self._fast_end(span):
                return
        except Exception:  # e.g. an SDK change: the snapshot path below still works
            log.debug("span fast path failed", exc_info=True)
        self._snapshot(span)

    def _snapshot(self, span: ReadableSpan) -> None:
        """The span for the sender thread's general path (never raises)."""
        try:
            self._enqueue(snapshot(span))
        except Exception:  # never into the app; counted like any other loss
            self.transport.count_drop("unknown", "encode_error")
            log.debug("could not snapshot a span", exc_info=True)


class ZmqSpanProcessor(_SpanPublisher, SpanProcessor):
    """Publishes finished spans; for a provider the app made (``configure()`` makes its own with
    :class:`ZmqProviderSpanProcessor`). ``on_end`` runs on the thread that ends the span."""

    def __init__(self, endpoint: str | None = None, transport: Transport | None = None, **options: Any):
        self._attach_spans(transport or get_transport(endpoint, **options))
        if self._c_on_end is not None:
            self.on_end = self._c_on_end  # type: ignore[method-assign]
        if self.transport.live_spans is not None:  # spans in progress (sdk.live), opt-in
            self.on_start = self.transport.live_spans.on_start  # type: ignore[method-assign]

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    on_end = _SpanPublisher.publish


class ZmqProviderSpanProcessor(_SpanPublisher, SynchronousMultiSpanProcessor):
    """The active span processor of a TracerProvider that ``configure()`` creates.

    The SDK calls its provider's active processor directly; the default one loops over the added
    processors, so session tagging and our snapshot as two added processors cost six Python calls
    per span. Here they are one call each in ``on_start``/``on_end`` (session tag, snapshot),
    followed by any processors the app adds later with ``add_span_processor``.

    ``on_start``/``on_end`` run on the threads that start/end spans: they never block or raise
    on our account (what added processors do is theirs, as in the SDK).
    """

    def __init__(self, transport: Transport) -> None:
        SynchronousMultiSpanProcessor.__init__(self)
        self._attach_spans(transport)
        self._live = transport.live_spans  # spans in progress (sdk.live): opt-in, None when off
        # With the C fast path, on_start/on_end are C callables (no Python frame per span) until
        # add_span_processor: then the methods below, which also loop over the added processors.
        # With live spans on, on_start stays the Python one below (it also remembers the span).
        c = speedups()
        if self._c_on_end is not None and c is not None:
            self.on_end = self._c_on_end  # type: ignore[method-assign]
            if self._live is None:
                self.on_start = c.Starter(_session, tag_span).on_start  # type: ignore[method-assign]

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        self.__dict__.pop("on_end", None)
        self.__dict__.pop("on_start", None)
        SynchronousMultiSpanProcessor.add_span_processor(self, span_processor)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if _session.get() is not None:  # checked here: no call for the usual span without one
            tag_span(span)
        if self._live is not None:
            self._live.on_start(span)
        for sp in self._span_processors:
            sp.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.publish(span)
        for sp in self._span_processors:
            sp.on_end(span)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        SynchronousMultiSpanProcessor.shutdown(self)
        _TransportUser.shutdown(self, timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        others = SynchronousMultiSpanProcessor.force_flush(self, int(timeout_millis))
        return _TransportUser.force_flush(self, timeout_millis) and others


class ZmqSpanExporter(_SpanPublisher, SpanExporter):
    """SpanExporter form for ``OTEL_TRACES_EXPORTER=zmq`` (the SDK wraps it in a batch processor,
    so ``export`` runs on that processor's worker thread)."""

    def __init__(self, endpoint: str | None = None, **options: Any) -> None:
        self._attach_spans(get_transport(endpoint, **options))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.publish(span)
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
        elif mtype in ("histogram", "exponential_histogram"):
            # Percentiles over a window need to know whether points are deltas or running totals.
            extra_common = {"temporality": _TEMPORALITY.get(data.aggregation_temporality)}
        out: list[Prepared] = []
        for p in data.data_points:
            attrs = dict(p.attributes or EMPTY)
            extra = dict(extra_common)
            if mtype == "histogram":
                value = p.sum
                extra.update(count=p.count, sum=p.sum, min=p.min, max=p.max,
                             bounds=list(p.explicit_bounds), counts=list(p.bucket_counts))
            elif mtype == "exponential_histogram":
                value = p.sum
                extra.update(count=p.count, sum=p.sum, min=p.min, max=p.max, scale=p.scale,
                             zero_count=p.zero_count, zero_threshold=0.0,
                             positive={"offset": p.positive.offset, "counts": list(p.positive.bucket_counts)},
                             negative={"offset": p.negative.offset, "counts": list(p.negative.bucket_counts)})
            else:
                value = p.value
            category, _ = cats.categorise_metric(m.name, attrs, self._conv.rules)
            component = attrs.get("telemetry.component") or scope.name or resource.get("service.name") or "unknown"
            rec = (m.name, m.description or None, m.unit or None, mtype, p.time_unix_nano,
                   getattr(p, "start_time_unix_nano", None), value, attrs, extra, scope.name, scope.version)
            out.append((category, self._conv.topic(category, str(component)), wire.KIND_METRICS, resource, rec))
        return out

