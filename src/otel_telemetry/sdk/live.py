"""Spans in progress (opt-in: ``configure(live_spans=True)`` / ``OTEL_TELEMETRY_LIVE_SPANS``).

A span still running ``LIVE_AFTER`` seconds after it started is announced to the collector with a
small "span started" record (``wire.KIND_SPAN_STARTED``): its name, ids, start time and the
attributes it has by then, redacted like a span. The collector shows it as running until the span
itself arrives (or, if it never does, as abandoned). Most spans end sooner and never leave the app
as a started record, so the cost on the wire follows the slow spans, not the span rate.

Started records are not telemetry: never numbered, resent or counted in ``emitted``; a lost one
only loses the preview. Their own counters are ``Transport.counters()["live_spans"]``.

Threads: :meth:`LiveSpans.on_start` runs on the thread that starts a span (append only: never
blocks or raises); everything else runs on the transport's sender thread. With the setting off
none of this exists and ``on_start`` stays what it was (no call of ours per span).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from opentelemetry.trace import StatusCode

from .. import wire
from .snapshot import CODE, KIND, PINNED, _pin

log = logging.getLogger("otel_telemetry.sdk.live")

LIVE_AFTER = 0.1  # seconds a span must have been running to be announced
MAX_TRACKED = 16384  # started spans waiting for LIVE_AFTER; beyond it a start is not tracked (counted)


class LiveSpans:
    """Started spans waiting to be announced, and the counters of what became of them."""

    def __init__(self, after: float = LIVE_AFTER, max_tracked: int = MAX_TRACKED) -> None:
        self.after = after
        self._max = max(1, max_tracked)
        self._q: deque[tuple[float, Any]] = deque()
        self._clock = time.monotonic
        # Counters (the sender thread's, except ``untracked``, which app threads bump: a lost
        # increment under a thread switch only misreports a preview count, never telemetry).
        self.untracked = 0
        self.ended_first = 0
        self.announced = 0
        self.dropped = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """App thread that starts ``span``: remember it (never blocks or raises). Also a span
        processor's ``on_start`` as it is."""
        q = self._q
        if len(q) < self._max:
            # A weak reference: a span that ends dies at once, as without live spans (held spans
            # would be promoted through the GC's generations, the costliest part of a span).
            try:
                q.append((self._clock(), weakref.ref(span)))
            except TypeError:  # a span class without weak references: no preview, no error
                self.untracked += 1
        else:
            self.untracked += 1

    def waiting(self) -> bool:
        return bool(self._q)

    def due(self) -> list[tuple[Any, ...]]:
        """Sender thread: started-span tuples (``snapshot`` layout, end None) of the spans that are
        still running ``after`` seconds after they started; spans that ended meanwhile are let go."""
        q = self._q
        limit = self._clock() - self.after
        out = []
        while True:
            try:  # app threads only append; clear() (fork, tests) may empty it under us
                if q[0][0] > limit:
                    break
                span = q.popleft()[1]()
            except IndexError:
                break
            if span is None or span.end_time is not None:
                self.ended_first += 1
                continue
            snap = started(span)
            if snap is None:
                self.dropped += 1
            else:
                out.append(snap)
        return out

    def announce(self, sock: zmq.Socket, packer: Any, convert: Callable[[Any], Any],
                 listened: Callable[[bytes], bool], publisher: bytes, flags: int, connected: bool) -> None:
        """Sender thread (holding the socket): started records for the spans still running,
        converted and redacted like spans (``convert``), sent at once, never numbered or held. A
        full pipe or no collector loses only the preview (counted ``dropped``)."""
        snaps = self.due()
        if not snaps:
            return
        if not connected:
            self.dropped += len(snaps)
            return
        groups: dict[tuple[bytes, int], tuple[dict[str, Any], list[Any]]] = {}
        for snap in snaps:
            try:
                _, topic, _, resource, rec = convert(snap)
            except Exception:  # below its level, or redaction failed: no preview
                self.dropped += 1
                continue
            groups.setdefault((topic, id(resource)), (resource, []))[1].append(rec)
        for (topic, _), (resource, recs) in groups.items():
            try:
                if not listened(topic):
                    raise zmq.Again
                sock.send_multipart(wire.encode(packer, topic, wire.KIND_SPAN_STARTED | flags, publisher, 0,
                                                resource, recs), zmq.NOBLOCK)
            except Exception:  # zmq.Again (a full pipe), or a value msgpack cannot take
                packer.reset()
                self.dropped += len(recs)
                continue
            self.announced += len(recs)

    def clear(self) -> None:
        self._q.clear()

    def counters(self) -> dict[str, int]:
        return {"announced": self.announced, "ended_first": self.ended_first, "untracked": self.untracked,
                "dropped": self.dropped, "waiting": len(self._q)}


def started(span: Any) -> tuple[Any, ...] | None:
    """A running span as a snapshot tuple with no end, no status, no events or links; its
    attributes copied (the app thread may still be adding some). None if it cannot be read."""
    try:
        ctx = span.get_span_context()
        parent = span.parent
        scope, res = span.instrumentation_scope, span.resource
        if id(scope) not in PINNED or id(res) not in PINNED:
            _pin(scope), _pin(res)
        attrs = dict(span.attributes or {})
        return (span.name, ctx.trace_id, ctx.span_id, parent.span_id if parent is not None else None,
                span.start_time, None, KIND[id(span.kind)], CODE[id(StatusCode.UNSET)], None, attrs, None, None,
                id(scope), id(res))
    except Exception:  # an SDK change: the preview is lost, the span is not
        log.debug("could not read a running span", exc_info=True)
        return None

