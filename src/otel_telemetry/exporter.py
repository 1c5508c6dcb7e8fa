"""Compatibility path: the SDK plug-ins moved to ``otel_telemetry.sdk.exporter``.

``from otel_telemetry.sdk.exporter import ZmqSpanProcessor`` (and the other plug-ins) keeps working.
"""

from __future__ import annotations

from .sdk.exporter import (
    ZmqLogExporter,
    ZmqLogRecordProcessor,
    ZmqMetricExporter,
    ZmqProviderSpanProcessor,
    ZmqSpanExporter,
    ZmqSpanProcessor,
    get_transport,
)

__all__ = ["ZmqLogExporter", "ZmqLogRecordProcessor", "ZmqMetricExporter", "ZmqProviderSpanProcessor",
           "ZmqSpanExporter", "ZmqSpanProcessor", "get_transport"]
