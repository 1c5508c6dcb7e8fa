"""Zero-code and one-line instrumentation: the ``zmq`` exporters for ``opentelemetry-instrument``
and :func:`instrument_fastapi` for code that calls ``configure()``.

``OTEL_TRACES_EXPORTER=zmq OTEL_METRICS_EXPORTER=zmq OTEL_LOGS_EXPORTER=zmq opentelemetry-instrument
python app.py`` builds the three exporter classes below from the entry points in ``pyproject.toml``
with no arguments (``OTEL_TELEMETRY_*`` from the environment) and wraps them in the SDK's
BatchSpanProcessor, PeriodicExportingMetricReader and BatchLogRecordProcessor.

The three share one transport (one socket, one sender thread); each holds a reference to it and
only the last one to shut down closes it (``exporter._TransportUser``), so the final metric
collection and the last spans still get out when the SDK shuts its providers down at exit.

Importing this module needs only the SDK; ``instrument_fastapi`` needs the ``instrument`` extra.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from . import exporter as _exp

log = logging.getLogger("otel_telemetry.sdk.instrumentation")

# The entry points name these; they are the exporter module's classes.
ZmqSpanExporter = _exp.ZmqSpanExporter
ZmqMetricExporter = _exp.ZmqMetricExporter
ZmqLogExporter = _exp.ZmqLogExporter


def instrument_fastapi(app: Any, telemetry: Any = None, **kwargs: Any) -> Any:
    """Instrument one FastAPI ``app`` with the providers of ``configure()`` (or ``telemetry``).

    Server spans (category user_interaction; 5xx ones error_patterns) carry ``http.route``,
    the status code and their duration; the HTTP server duration histogram goes to the meter
    provider when ``configure(metrics=True)``. Extra ``kwargs`` go to
    ``FastAPIInstrumentor.instrument_app`` (e.g. ``excluded_urls="healthz"``). Returns ``app``.
    """
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("instrument_fastapi needs: pip install 'otel-telemetry[instrument]'") from exc
    from .configure import _current

    tel = telemetry if telemetry is not None else _current
    if tel is None:
        raise RuntimeError("call otel_telemetry.configure() before instrument_fastapi(app)")
    kwargs.setdefault("tracer_provider", tel.tracer_provider)
    if tel.meter_provider is not None:
        kwargs.setdefault("meter_provider", tel.meter_provider)
    FastAPIInstrumentor.instrument_app(app, **kwargs)
    return app


_EXPORTER_ENVS = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER")
SIGTERM_ENV = "OTEL_TELEMETRY_SIGTERM_FLUSH"


def _zmq_selected() -> bool:
    return any("zmq" in [n.strip() for n in os.environ.get(e, "").split(",")] for e in _EXPORTER_ENVS)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def install_sigterm_exit() -> bool:
    """Make SIGTERM end the process through ``SystemExit`` so ``atexit`` runs and the SDK
    providers flush their batch queues. Only when SIGTERM still has its default action (an app
    or server with its own handler is left alone) and on the main thread. Returns True if set.

    Why: Python's default SIGTERM kills the process without ``atexit``, so spans waiting in a
    BatchSpanProcessor are lost; uvicorn (>= 0.29) shuts down gracefully on SIGTERM and then
    re-raises the signal with the previous handler, i.e. this one."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return True


def post_instrument() -> None:
    """``opentelemetry_post_instrument`` hook, run by ``opentelemetry-instrument`` after the SDK
    and the instrumentors are set up. Starts host metrics when ``OTEL_TELEMETRY_HOST_METRICS=true``;
    when a ``zmq`` exporter is selected, makes SIGTERM flush (unless ``OTEL_TELEMETRY_SIGTERM_FLUSH=false``)."""
    from . import hostmetrics

    try:
        hostmetrics.start_from_env()
    except Exception:
        log.warning("could not start host metrics", exc_info=True)
    if _zmq_selected() and os.environ.get(SIGTERM_ENV, "true").strip().lower() not in ("0", "false", "no", "off"):
        install_sigterm_exit()
