"""otel-telemetry: OpenTelemetry-native local telemetry. App-side public API only."""

from __future__ import annotations

from .categories import CATEGORIES
from .configure import Telemetry, configure, logging_handler, record_telemetry
from .instrumentation import instrument_fastapi
from .redact_config import RedactionConfig
from .sessions import session, set_session_id
from .traced import traced

__version__ = "0.1.0"
__all__ = [
    "CATEGORIES", "RedactionConfig", "Telemetry", "configure", "instrument_fastapi", "logging_handler",
    "record_telemetry", "session", "set_session_id", "traced", "__version__",
]
