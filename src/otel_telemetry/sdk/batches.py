"""Span records converted on application threads, encoded in batches where they were made.

``span_plans.SpanPlans.end`` turns a span of a known shape into its wire record on the thread
that ends it (dict lookups only: no scans, no I/O, no locks). The record goes into
:class:`ReadyBatches`; the thread whose record fills a batch encodes it right there, while the
records are still in its CPU cache, and sends them itself when the socket is free
(``Transport._send_ready``), else leaves the frames for the transport's sender thread, which
only stamps sequence numbers and sends. Shipping each record to the sender thread instead
costs more than all of that: the sender has to take the GIL and pull every record into another
core's cache (docs/benchmarks.md).

Thread rules: ``add``/``flush`` run on any application thread and must not block or raise;
deque ``append``/``popleft`` are atomic under the GIL, so no lock is taken. ``pop_ready`` and
``unpop_ready`` run on whichever thread holds the transport's socket lock. ``take_ready``,
``drain`` and ``drop_all`` run on the sender thread only; ``queued``/``busy`` on any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .. import wire

log = logging.getLogger("otel_telemetry.sdk.transport")

BATCH = 512  # records per app-side encode: large enough to amortise msgpack, small enough to stay in cache

# (group, record): a wire.KIND_SPAN_SHAPES record (a tuple, or its msgpack bytes from _fastspan)
# and the constant group of its shape,
# (category, (topic, id(resource)), resource, shape id, shape, pseudonyms per record)
Entry = tuple[tuple[str, tuple[bytes, int], dict[str, Any], int, Any, int], tuple[Any, ...] | bytes]
_GROUP, _REC = itemgetter(0), itemgetter(1)
# (category, topic, frames, record count): what the sender sends
Message = tuple[str, bytes, list[bytes], int]


class ReadyBatches:
    """Bounded: at most ``max_records`` records (counting each waiting message as a full batch)."""

    def __init__(self, publisher: bytes, max_records: int, on_bad: Callable[[str, int], None],
                 on_pseudonyms: Callable[[int], None] | None = None, batch: int = BATCH,
                 on_ready: Callable[[], None] | None = None) -> None:
        self._publisher = publisher
        self.closed = False  # set at transport shutdown: add() refuses, the caller counts the drop
        self._max = max(1, max_records)
        self._batch = max(1, batch)
        self._on_bad = on_bad
        self._on_pseudonyms = on_pseudonyms
        self._on_ready = on_ready  # after a flush made messages: the transport may send them at once
        self._recs: deque[Entry] = deque()
        self._since = 0.0  # when _recs last went from empty to not empty
        self._ready: deque[Message] = deque()
        self._busy: deque[None] = deque()  # one token per thread encoding right now
        self._local = threading.local()  # a msgpack Packer per thread (Packers are not thread-safe)

    # -- any thread -------------------------------------------------------------------------------
    def reset(self, publisher: bytes) -> None:
        """In a forked child (the parent's records are the parent's to send): start empty. The
        object stays the same, so holders of its bound methods need not be told."""
        self._publisher = publisher
        self.closed = False
        self._recs.clear()
        self._ready.clear()
        self._busy.clear()
        self._local = threading.local()

    def add(self, entry: Entry) -> bool:
        """Take one converted record; False if full or closed (the caller sends it the long way). Encodes a batch
        when this record fills one. Called on the thread that ends the span: never blocks.
        ``_fastspan.c`` (add_entry) does the same in C: change both together."""
        recs = self._recs
        if len(recs) + self._batch * len(self._ready) >= self._max or self.closed:
            return False
        if not recs:
            self._since = time.monotonic()
        recs.append(entry)
        if len(recs) >= self._batch:
            self.flush()
        return True

    def flush(self) -> None:
        """Encode up to one batch of waiting records into ready messages. Never raises: a group
        that cannot be encoded is counted through ``on_bad``."""
        busy = self._busy
        busy.append(None)
        try:
            entries: list[Entry] = pop_up_to(self._recs, self._batch)
            if entries:
                self._encode(entries)
                if self._on_ready is not None:
                    self._on_ready()  # never raises (Transport._send_ready)
        finally:
            busy.pop()

    def queued(self) -> dict[str, int]:
        """Records waiting here, by category (a moment's view; exact once quiet)."""
        return _by_category(list(self._recs), list(self._ready))

    def busy(self) -> bool:
        """Records are waiting or being encoded (force_flush waits for this)."""
        return bool(self._recs or self._ready or self._busy)

    def has_records(self) -> bool:
        return bool(self._recs)

    def oldest(self) -> float:
        """When the oldest waiting record arrived (monotonic; about: a thread may be adding)."""
        return self._since

    # -- sender thread ----------------------------------------------------------------------------
    def take_ready(self) -> list[Message]:
        return pop_up_to(self._ready)

    # -- whoever holds the transport's socket lock ------------------------------------------------
    def pop_ready(self) -> Message | None:
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def unpop_ready(self, msg: Message) -> None:
        """Put a message that could not go back at the front (it keeps its place)."""
        self._ready.appendleft(msg)

    def drain(self) -> None:
        """Encode every waiting record (flush, shutdown, or a partial batch that waited too long)."""
        while self._recs:
            self.flush()

    def drop_all(self) -> dict[str, int]:
        """Remove everything waiting; returns the record counts by category for the caller to count."""
        return _by_category(pop_up_to(self._recs), pop_up_to(self._ready))

    # -- internals --------------------------------------------------------------------------------
    def _encode(self, entries: list[Entry]) -> None:
        groups: dict[tuple[bytes, int], tuple[str, dict[str, Any], dict[int, Any], list[Any]]] = {}
        pseudonyms = 0
        try:
            # Runs of one shape (one group object: groupby's identity check) are the usual case:
            # per record, only C-level iteration.
            for (cat, gkey, resource, shape_id, shape, n), run in itertools.groupby(entries, _GROUP):
                g = groups.get(gkey)
                if g is None:
                    g = groups[gkey] = (cat, resource, {}, [])
                g[2][shape_id] = shape
                before = len(g[3])
                g[3].extend(map(_REC, run))
                pseudonyms += n * (len(g[3]) - before)
            packer = getattr(self._local, "packer", None)
            if packer is None:
                packer = self._local.packer = wire.new_packer()
        except Exception:  # cannot happen with well-formed entries; never lose them silently
            log.debug("could not group app-side records", exc_info=True)
            for e in entries:
                self._on_bad(e[0][0], 1)
            return
        ready = self._ready
        for (topic, _), (cat, resource, shapes, recs) in groups.items():
            try:
                frames = wire.encode_shaped(packer, topic, self._publisher, resource, shapes, recs)
            except Exception:
                log.debug("could not encode a batch for %s", topic, exc_info=True)
                packer.reset()
                self._on_bad(cat, len(recs))
                continue
            ready.append((cat, topic, frames, len(recs)))
        if pseudonyms and self._on_pseudonyms is not None:
            self._on_pseudonyms(pseudonyms)


def _by_category(entries: list[Entry], messages: list[Message]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[e[0][0]] = out.get(e[0][0], 0) + 1
    for m in messages:
        out[m[0]] = out.get(m[0], 0) + m[3]
    return out


def pop_up_to(dq: deque[Any], limit: int | None = None) -> list[Any]:
    """Up to ``limit`` (default: all) items of ``dq``, oldest first, while other threads may still
    append to it (popleft is atomic; len() then popleft would not be)."""
    out: list[Any] = []
    popleft = dq.popleft
    for _ in itertools.repeat(None) if limit is None else range(limit):
        try:
            out.append(popleft())
        except IndexError:
            break
    return out
