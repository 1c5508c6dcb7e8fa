"""The flat snapshot of an ended span, taken on the thread that ends it.

Shared by the span processors (``exporter``), the sender thread's converter (``convert``) and the
per-shape fast path (``span_plans``). Scopes and resources travel as ids into ``PINNED``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

EMPTY: dict[str, Any] = {}
# Keyed by id(): enum members hash through Python code, id() does not.
KIND = {id(k): k.value for k in SpanKind}
CODE = {id(c): c.value for c in StatusCode}
# The other way round, for span_plans (which checks a span's members by identity).
KIND_MEMBER = {k.value: k for k in SpanKind}
STATUS_MEMBER = {c.value: c for c in StatusCode}


# Scopes and resources seen by ``snapshot``, by id(): pinned so an id is never reused while we
# hold it. Both are few and live as long as their provider.
PINNED: dict[int, Any] = {}
SNAPSHOT_LEN = 14


def _pin(obj: Any) -> int:
    key = id(obj)
    if key not in PINNED:
        PINNED[key] = obj
    return key


def snapshot(span: ReadableSpan) -> tuple[Any, ...]:
    """A flat tuple of an ended span, made on the thread that ends it: must not block or raise.

    The tuple holds only ints, strings, None and the span's own attribute dict (untracked by
    the garbage collector when its values are plain), so the SDK span dies right away instead
    of lingering in our queue and being promoted through the GC generations — which cost more
    than all the copying here. Private SDK fields are read directly; :func:`snapshot_public`
    is the fallback if they change.
    """
    try:
        ctx = span._context
        parent = span._parent
        status = span._status
        attrs = span._attributes._dict
        events = span._events._dq
        links = span._links._dq
        scope, res = span._instrumentation_scope, span._resource
        scope_id, res_id = id(scope), id(res)
        if scope_id not in PINNED or res_id not in PINNED:
            _pin(scope), _pin(res)
        return (
            # SpanContext is a tuple ([0] trace id, [1] span id): indexing skips its properties.
            span._name, ctx[0], ctx[1], parent[1] if parent is not None else None,
            span._start_time, span._end_time, KIND[id(span._kind)], CODE[id(status._status_code)],
            status._description, attrs,
            [(e.name, e.timestamp, dict(e.attributes or EMPTY)) for e in events] if events else None,
            [(lk.context.trace_id, lk.context.span_id, dict(lk.attributes or EMPTY)) for lk in links]
            if links else None,
            scope_id, res_id,
        )
    except (AttributeError, KeyError, TypeError):
        return snapshot_public(span)


def snapshot_public(span: ReadableSpan) -> tuple[Any, ...]:
    """Same tuple as :func:`snapshot` through the public ReadableSpan API only."""
    ctx, parent = span.context, span.parent
    return (
        span.name, ctx.trace_id, ctx.span_id, parent.span_id if parent is not None else None,
        span.start_time, span.end_time, span.kind.value, span.status.status_code.value,
        span.status.description, dict(span.attributes or EMPTY),
        [(e.name, e.timestamp, dict(e.attributes or EMPTY)) for e in span.events] or None,
        [(lk.context.trace_id, lk.context.span_id, dict(lk.attributes or EMPTY)) for lk in span.links] or None,
        _pin(span.instrumentation_scope), _pin(span.resource),
    )
