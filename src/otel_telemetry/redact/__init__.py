"""Redaction of wire tuples, used by the app side (``sdk``) and by the collector.

``otel_telemetry.redact`` was one module before the package layout; its public names stay
importable from here (``from otel_telemetry.redact import Redactor``).
"""

from __future__ import annotations

from .config import ENV_ENABLED, ENV_KEY, MIN_KEY_BYTES, RedactionConfig
from .redactor import DETECTORS, Redactor, scan_bytes

__all__ = ["DETECTORS", "ENV_ENABLED", "ENV_KEY", "MIN_KEY_BYTES", "RedactionConfig", "Redactor", "scan_bytes"]
