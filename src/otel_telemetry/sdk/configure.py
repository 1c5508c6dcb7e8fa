"""Wire SDK providers to the ZeroMQ transport: ``configure()`` and ``record_telemetry()``."""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import sampling as _sampling

from .. import categories as cats
from .. import settings
from ..redact.config import RedactionConfig
from .exporter import (
    ZmqLogRecordProcessor,
    ZmqMetricExporter,
    ZmqProviderSpanProcessor,
    ZmqSpanProcessor,
    get_transport,
)
from .sessions import SessionSpanProcessor
from .transport import Transport
from .volume import CategorySampler

log = logging.getLogger("otel_telemetry")

LEVELS = cats.LEVELS


@dataclass
class Telemetry:
    """What ``configure()`` returns. Methods may be called from any thread."""

    transport: Transport
    tracer_provider: TracerProvider
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    _owned: list[Any] = field(default_factory=list)

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Push everything recorded so far to the socket; returns within ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.meter_provider is not None:
            # The SDK's flush may overrun; it only collects, our transport flush below is bounded.
            self.meter_provider.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))
        return self.transport.force_flush(max(0.0, deadline - time.monotonic()))

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Flush and close; idempotent; returns within ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self.meter_provider is not None and self.meter_provider in self._owned:
            # First, so its final collection is exported while the transport still takes records.
            self._owned.remove(self.meter_provider)
            try:
                self.meter_provider.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
            except Exception:
                log.debug("meter provider shutdown failed", exc_info=True)
        ok = self.transport.shutdown(max(0.0, deadline - time.monotonic()))
        for provider in self._owned:
            try:
                provider.shutdown()
            except Exception:
                log.debug("provider shutdown failed", exc_info=True)
        self._owned.clear()
        return ok

    def counters(self) -> dict[str, Any]:
        """``{"emitted", "sent", "dropped": {reason: n}, "queued", "by_category": {...},
        "redacted": {rule: n}}`` (redaction counts only, never values)."""
        return self.transport.counters()


_current: Telemetry | None = None
# What record_telemetry and @traced use when configure() was never called and no SDK provider
# is installed globally: made on first use, never installed globally (see api_tracer_provider).
_default: Telemetry | None = None
_default_error: Exception | None = None  # why the default could not be made (warned once)
_default_lock = threading.Lock()


def configure(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    tracer_provider: TracerProvider | None = None,
    metrics: bool = True,
    host_metrics: bool = False,
    logs: bool = True,
    set_global: bool = True,
    rules: Sequence[Mapping[str, Any]] = (),
    redaction: RedactionConfig | bool | None = None,
    **options: Any,
) -> Telemetry:
    """Install providers wired to the ZeroMQ transport and return a :class:`Telemetry` handle.

    ``service_name`` and ``resource_attributes`` add to ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` (read by the SDK's ``Resource.create``). Pass an existing
    ``tracer_provider`` to add our span processor to it instead of creating one. ``options``:
    ``queue_size``, ``batch_size``, ``join_timeout``, ``send_hwm``, ``export_interval``, ``redact_in_app``,
    and volume control (``otel_telemetry.sdk.volume``): ``min_level`` (``"warning"`` or
    ``{"system_performance": "warning", "*": "info"}``: records below are dropped, counted
    ``below_level``), ``sampling`` (``{"user_interaction": 0.1}``: head sampling by the root span's
    category, a trace kept or dropped whole, counted ``sampled_out``) and ``sample_logs``.
    ``live_spans=True`` announces spans still running after 0.1 s (``otel_telemetry.sdk.live``):
    the dashboard and ``otel-telemetry watch --in-progress`` show them while they run.
    ``host_metrics=True`` (with ``metrics``) adds CPU, memory, disk, network and uptime metrics of
    the host and this process (``otel_telemetry.sdk.hostmetrics``; needs psutil).

    ``redaction``: personal data and secrets are redacted before they leave the device (on by
    default; ``OTEL_TELEMETRY_REDACT=off`` or ``redaction=False`` turn it off, a
    :class:`~otel_telemetry.redact.RedactionConfig` tunes it; it applies when this process's
    transport is created). Over an endpoint that stays on this device (ipc://, loopback tcp://)
    the collector redacts the records; over any other this process's sender thread does
    (``redact_in_app="always"`` / ``OTEL_TELEMETRY_REDACT_IN_APP=always``: always here).
    ``counters()["redaction"]`` says which; ``counters()["redacted"]`` counts the replacements made
    in this process per rule.
    """
    global _current
    attrs = dict(resource_attributes or {})
    if service_name:
        attrs["service.name"] = service_name
    parsed_rules = cats.parse_rules(rules)
    transport = get_transport(endpoint, parsed_rules, redaction, **options)
    owned: list[Any] = []
    volume = transport.volume
    sampler = None
    if volume is not None and (volume.sampling_on or volume.sample_logs):
        # Head sampling per category (sdk.volume); OTEL_TRACES_SAMPLER, if set, decides first.
        inner = _env_sampler() if os.environ.get("OTEL_TRACES_SAMPLER") else None
        sampler = CategorySampler(volume, parsed_rules, transport.count_drop, inner)
    if tracer_provider is None:
        # Our processor is the provider's active one: one call per span start/end, not six.
        tracer_provider = TracerProvider(resource=Resource.create(attrs), sampler=sampler,
                                         active_span_processor=ZmqProviderSpanProcessor(transport))
        owned.append(tracer_provider)
        if set_global:
            trace_api.set_tracer_provider(tracer_provider)
    else:
        if sampler is not None:
            log.warning("configure(sampling=...): the tracer_provider passed in keeps its own sampler; "
                        "give it sampler=otel_telemetry.sdk.volume.CategorySampler() to sample by category")
        tracer_provider.add_span_processor(SessionSpanProcessor())  # session.id from otel_telemetry.session()
        tracer_provider.add_span_processor(ZmqSpanProcessor(transport=transport))
    resource = tracer_provider.resource
    meter_provider = None
    if metrics:
        interval = settings.resolve("export_interval", options.get("export_interval"))
        reader = PeriodicExportingMetricReader(
            ZmqMetricExporter(endpoint, parsed_rules, **options), export_interval_millis=interval * 1000
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        owned.append(meter_provider)
        if set_global:
            metrics_api.set_meter_provider(meter_provider)
        if host_metrics:  # system.* / process.* gauges and counters (needs psutil)
            from .hostmetrics import start as start_host_metrics

            start_host_metrics(meter_provider)
    logger_provider = None
    if logs:
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(ZmqLogRecordProcessor(transport=transport))
        owned.append(logger_provider)
        if set_global:
            from opentelemetry._logs import set_logger_provider

            set_logger_provider(logger_provider)
    _current = Telemetry(transport, tracer_provider, meter_provider, logger_provider, owned)
    return _current


def _env_sampler() -> Any:
    """The sampler ``OTEL_TRACES_SAMPLER`` names (the SDK's own reading of it), or None."""
    try:
        return _sampling._get_from_env_or_default()
    except Exception:  # a private SDK function: if it moves, the category sampler decides alone
        log.debug("could not read OTEL_TRACES_SAMPLER", exc_info=True)
        return None


def api_tracer_provider() -> trace_api.TracerProvider:
    """The provider of ``record_telemetry`` and ``@traced`` (caller's thread, never raises).

    ``configure()``'s, else the global SDK provider if the app installed one, else — as the OTel
    API falls back on its global provider, but instead of a silent no-op — a default one made on
    first use: ``configure(set_global=False, metrics=False, logs=False)`` with the
    ``OTEL_TELEMETRY_*`` settings (endpoint, redaction). It is not installed globally, so a later
    ``configure()`` still takes over; its records reach a collector or are counted
    (``no_collector``), and it is flushed at exit like any SDK provider.
    """
    global _current, _default, _default_error
    if _current is not None:
        return _current.tracer_provider
    provider = trace_api.get_tracer_provider()
    if not isinstance(provider, trace_api.ProxyTracerProvider):
        return provider  # the app's own SDK (or its explicit no-op choice)
    default = _default
    if default is not None:  # the common case after the first call: no lock
        return default.tracer_provider
    with _default_lock:
        if _default is None:
            if _default_error is not None:
                return provider
            try:
                default = configure(set_global=False, metrics=False, logs=False)
            except Exception as exc:  # e.g. a bad OTEL_TELEMETRY_* value: say so once, loudly
                _default_error = exc
                log.warning("otel_telemetry used before configure() and the default transport cannot "
                            "start (%s): records of record_telemetry/@traced are dropped until configure()",
                            exc)
                return provider
            if _current is default:
                _current = None  # the default is not "the configured one"
            _default = default
            log.info("otel_telemetry used before configure(): sending through a default transport to %s",
                     default.transport.endpoint)
        return _default.tracer_provider


def record_telemetry(
    category: str,
    subcategory: str,
    event: str,
    level: str = "info",
    data: Mapping[str, Any] | None = None,
    component: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Record one event of the original design's API (AICO's record); stored like any span.

    ``component`` names the part of the app that records it; without one it is the provider's
    ``service.name`` (``OTEL_SERVICE_NAME`` / ``configure(service_name)``), so
    ``otel-telemetry query --component <service>`` finds it. ``metadata`` is the record's
    optional context (AICO: ``session_id``, ``trace_id``, ``span_id``, ``user_mode``,
    ``deployment_type``, ``version``, or any other keys): stored in the row's ``metadata`` under
    ``record``; its ``session_id`` fills the session column; its ``trace_id`` (with ``span_id``
    if both are W3C hex ids) puts the event into that trace, as ``@traced``'s ``_trace_id=``
    does (``otel_telemetry.sdk.traced.trace_context``).

    Works before ``configure()`` too (:func:`api_tracer_provider`). Runs on the caller's thread:
    never raises, never blocks. A bad category or level is counted as an ``invalid_event`` drop
    and logged once per bad value.
    """
    try:
        if category not in cats.CATEGORY_SET or level not in LEVELS:
            _invalid(category, level)
            return
        provider = api_tracer_provider()
        tracer = provider.get_tracer("otel_telemetry.events")
        attributes = {
            "telemetry.category": category,
            "telemetry.subcategory": subcategory,
            "telemetry.event": event,
            "telemetry.level": level,
            "telemetry.data": orjson.dumps(data or {}, default=str).decode(),
        }
        if not component:
            resource = getattr(provider, "resource", None)
            component = (resource.attributes.get("service.name") if resource is not None else None) \
                or "unknown_service"
        attributes["telemetry.component"] = str(component)
        meta = dict(metadata) if isinstance(metadata, Mapping) else {}
        parent = None
        if meta:
            attributes["telemetry.metadata"] = orjson.dumps(
                meta, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            parent = _parent_of(meta)
        span = tracer.start_span(event, context=parent, attributes=attributes)
        if meta.get("session_id") is not None:
            # After start: an explicit session wins over the session() context's tag.
            span.set_attribute("session.id", str(meta["session_id"]))
        if level in ("error", "critical"):
            span.set_status(trace_api.Status(trace_api.StatusCode.ERROR))
        span.end()
    except Exception:
        log.debug("record_telemetry failed", exc_info=True)


_HEX = frozenset("0123456789abcdef")


def _parent_of(meta: Mapping[str, Any]) -> Any:
    """The trace an event's metadata names (``trace_id`` + optional ``span_id``), or None."""
    trace_ref, span_ref = meta.get("trace_id"), meta.get("span_id")
    if trace_ref is None:
        return None
    tid, sid = str(trace_ref).lower(), str(span_ref or "").lower()
    if len(tid) == 32 and len(sid) == 16 and _HEX.issuperset(tid + sid) and tid.strip("0") and sid.strip("0"):
        ctx = trace_api.SpanContext(int(tid, 16), int(sid, 16), is_remote=True,
                                    trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))
        return trace_api.set_span_in_context(trace_api.NonRecordingSpan(ctx))
    # Any other reference: the same mapping as @traced's _trace_id= (module by name, no circle).
    traced = importlib.import_module(".traced", __package__)
    return traced.trace_context(trace_ref)[0]


_warned: set[tuple[str, str]] = set()


def _invalid(category: str, level: str) -> None:
    api_tracer_provider()  # before configure(): the default transport counts it
    tel = _current if _current is not None else _default
    if tel is not None:
        tel.transport.count_drop("invalid", "invalid_event")
    key = (str(category), str(level))
    if key not in _warned and len(_warned) < 100:
        _warned.add(key)
        log.warning("record_telemetry: category %r / level %r not valid; event dropped (counted)",
                    category, level)


def logging_handler(telemetry: Telemetry | None = None, level: int = logging.NOTSET) -> logging.Handler:
    """A stdlib ``logging.Handler`` that sends records through the configured LoggerProvider."""
    from opentelemetry.sdk._logs import LoggingHandler

    tel = telemetry or _current
    if tel is None or tel.logger_provider is None:
        raise RuntimeError("configure(logs=True) first")
    return LoggingHandler(level=level, logger_provider=tel.logger_provider)
