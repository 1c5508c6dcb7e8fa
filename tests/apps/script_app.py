"""A plain script with no OpenTelemetry code beyond the API a library would use: one span, one
counter point, one warning log, then a normal exit (``atexit`` flushes the SDK)."""

from __future__ import annotations

import logging

from opentelemetry import metrics, trace

logging.basicConfig(level=logging.INFO)
with trace.get_tracer("script").start_as_current_span("work", attributes={"job.id": 7}):
    logging.getLogger("script").warning("working on job 7")
metrics.get_meter("script").create_counter("script.jobs").add(1)
