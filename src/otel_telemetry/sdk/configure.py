"""Wire SDK providers to the ZeroMQ transport: ``configure()`` and ``record_telemetry()``."""

from __future__ import annotations

import logging
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

log = logging.getLogger("otel_telemetry")

LEVELS = ("debug", "info", "warning", "error", "critical")


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
    ``queue_size``, ``batch_size``, ``join_timeout``, ``send_hwm``, ``export_interval``, ``redact_in_app``.
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
    if tracer_provider is None:
        # Our processor is the provider's active one: one call per span start/end, not six.
        tracer_provider = TracerProvider(resource=Resource.create(attrs),
                                         active_span_processor=ZmqProviderSpanProcessor(transport))
        owned.append(tracer_provider)
        if set_global:
            trace_api.set_tracer_provider(tracer_provider)
    else:
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


def record_telemetry(
    category: str,
    subcategory: str,
    event: str,
    level: str = "info",
    data: Mapping[str, Any] | None = None,
    component: str | None = None,
) -> None:
    """Record one event of the original design's simple API; stored like any span.

    Runs on the caller's thread: never raises, never blocks. A bad category or level is
    counted as an ``invalid_event`` drop and logged once per bad value.
    """
    try:
        if category not in cats.CATEGORY_SET or level not in LEVELS:
            _invalid(category, level)
            return
        provider = _current.tracer_provider if _current is not None else trace_api.get_tracer_provider()
        tracer = provider.get_tracer("otel_telemetry.events")
        attributes = {
            "telemetry.category": category,
            "telemetry.subcategory": subcategory,
            "telemetry.event": event,
            "telemetry.level": level,
            "telemetry.data": orjson.dumps(data or {}, default=str).decode(),
        }
        if component:
            attributes["telemetry.component"] = component
        span = tracer.start_span(event, attributes=attributes)
        if level in ("error", "critical"):
            span.set_status(trace_api.Status(trace_api.StatusCode.ERROR))
        span.end()
    except Exception:
        log.debug("record_telemetry failed", exc_info=True)


_warned: set[tuple[str, str]] = set()


def _invalid(category: str, level: str) -> None:
    if _current is not None:
        _current.transport.count_drop("invalid", "invalid_event")
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
