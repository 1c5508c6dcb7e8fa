"""otel-telemetry: OpenTelemetry-native local telemetry. App-side public API only."""

from __future__ import annotations

from ._version import __version__
from .categories import CATEGORIES
from .redact.config import RedactionConfig
from .sdk.configure import Telemetry, configure, logging_handler, record_telemetry
from .sdk.instrumentation import instrument_fastapi
from .sdk.sessions import session, set_session_id
from .sdk.traced import traced

__all__ = [
    "CATEGORIES", "RedactionConfig", "Telemetry", "configure", "instrument_fastapi", "logging_handler",
    "record_telemetry", "session", "set_session_id", "traced", "__version__",
]
