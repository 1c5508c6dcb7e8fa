"""otel-telemetry: OpenTelemetry-native local telemetry. App-side public API only.

The names are imported on first use (PEP 562), so the CLI and the collector, which start as
``python -m otel_telemetry``, do not pay for the OpenTelemetry SDK the app side needs (about a
quarter of a second per process start)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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

_WHERE = {
    "CATEGORIES": ".categories", "RedactionConfig": ".redact.config", "Telemetry": ".sdk.configure",
    "configure": ".sdk.configure", "logging_handler": ".sdk.configure", "record_telemetry": ".sdk.configure",
    "instrument_fastapi": ".sdk.instrumentation", "session": ".sdk.sessions", "set_session_id": ".sdk.sessions",
    "traced": ".sdk.traced",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
