"""M1's trace id propagation (``child_function(_trace_id=trace_id)``): the parent context that
puts a call into the trace a caller names, whether or not it is a W3C trace id. Used by ``@traced``
and ``record_telemetry``; never raises."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api

log = logging.getLogger("otel_telemetry.traced")

TRACE_REF_ATTR = "telemetry.trace_ref"  # the caller's own trace id when it was not an OTel one
REF_LIMIT = 256  # characters of a reference kept in the attribute
_HEX = frozenset("0123456789abcdef")


def trace_context(trace_ref: Any) -> tuple[context_api.Context | None, str | None]:
    """The parent context for a call given ``_trace_id=trace_ref``, and the attribute to note.

    A W3C trace id (32 hex digits, not all zero) is used as is. Any other value (M1 passes
    ``f"trace_{int(time.time())}"``) is hashed to a trace id, so every call given the same
    reference lands in the same trace, and the reference itself is kept in
    ``telemetry.trace_ref``. The parent is a remote span context of that trace whose span id is
    derived from the reference too (the caller had no span of its own). A reference that names
    the trace already current changes nothing. Never raises; ``(None, None)`` for ``None``.
    """
    if trace_ref is None:
        return None, None
    try:
        ref = str(trace_ref)
        low = ref.lower()
        if len(low) == 32 and _HEX.issuperset(low) and low.strip("0"):
            trace_id, note = int(low, 16), None
        else:
            digest = hashlib.blake2b(ref.encode("utf-8", "replace"), digest_size=24).digest()
            trace_id, note = int.from_bytes(digest[:16], "big") or 1, ref[:REF_LIMIT]
        current = trace_api.get_current_span().get_span_context()
        if current.is_valid and current.trace_id == trace_id:
            return None, note
        span_id = int.from_bytes(hashlib.blake2b(ref.encode("utf-8", "replace"), digest_size=8,
                                                 person=b"otel-tele-span").digest(), "big") or 1
        parent = trace_api.SpanContext(trace_id, span_id, is_remote=True,
                                       trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED))
        return trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent)), note
    except Exception:
        log.debug("traced: unusable _trace_id", exc_info=True)
        return None, None
