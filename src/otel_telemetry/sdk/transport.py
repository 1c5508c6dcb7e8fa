"""The app side's one ZeroMQ publisher: a bounded queue and one sender thread owning the socket.

Why XPUB and not PUB: PUB loses silently (FINDINGS §2). XPUB with XPUB_NODROP turns a full pipe
into ``zmq.Again`` that we can count or retry, and it hands us subscription messages, so the
sender knows whether a collector is listening. Messages to a topic nobody subscribed are filtered
by libzmq without any error, so the sender never sends without a matching subscription: those
records are counted as ``no_collector`` instead. Per-topic record sequence numbers (``wire``) let
the collector count whatever is lost in between.

Threads: ``enqueue`` and ``_send_ready`` run on application threads (must not block or raise);
the rest runs on the single sender thread (``sender.Sender``, mixed in). The socket is used only
under ``_sock_lock``: by the sender while it works, and by an app thread that has just encoded a
batch while the sender sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from .. import wire
from .batches import ReadyBatches
from .live import LiveSpans
from .replay import ReplayBuffer
from .sender import (  # noqa: F401  # Dropped, Prepared and the reasons are this module's API too
    ENCODE_ERROR,
    NO_COLLECTOR,
    QUEUE_FULL,
    SHUTDOWN,
    Converter,
    Dropped,
    Prepared,
    Sender,
)
from .span_plans import SpanPlans
from .volume import AppVolume

log = logging.getLogger("otel_telemetry.sdk.transport")

_live: weakref.WeakSet[Transport] = weakref.WeakSet()


class Transport(Sender):
    """Bounded queue + sender thread + XPUB socket for one endpoint.

    ``converter`` turns a queued item (an SDK span, log record or a prepared metric point) into
    a :data:`Prepared` tuple; it runs on the sender thread so the app thread only appends.
    ``span_plans`` (optional, the converter's) is wired here: it learns span shapes from each batch
    the sender converts, and its fast path (``end``/``ender``, used by the span processors) puts
    records into ``batches``.
    """

    def __init__(self, endpoint: str, converter: Converter, *, queue_size: int = 8192,
                 batch_size: int = 512, join_timeout: float = 2.0, send_hwm: int = 1000,
                 categorise_drop: Callable[[Any], str] | None = None, curve_server_key: str | None = None,
                 curve_client_key_file: str | None = None,
                 redaction_counts: Callable[[], dict[str, int]] | None = None,
                 span_plans: SpanPlans | None = None, redaction_site: str = "app",
                 replay_buffer: int = 65536, live_spans: bool = False) -> None:
        self.endpoint = endpoint
        # Spans in progress (sdk.live), opt-in: the span processors' on_start feeds it.
        self.live_spans: LiveSpans | None = LiveSpans() if live_spans else None
        self.volume: AppVolume | None = None  # the app's levels and sampling (sdk.volume), if any
        # "collector": every data frame carries wire.FLAG_REDACT (see exporter.redaction_site).
        self.redaction_site = redaction_site
        self._flags = wire.FLAG_REDACT if redaction_site == "collector" else 0
        self._curve_server_key = curve_server_key
        self._curve_client_key_file = curve_client_key_file
        self._convert = converter
        self._learn = span_plans.learn if span_plans is not None else None
        self._on_pseudonyms = span_plans.count_pseudonyms if span_plans is not None else None
        self._redaction_counts = redaction_counts
        self._categorise_drop = categorise_drop or (lambda item: "unknown")
        self._max = max(1, queue_size)
        self._replay_max = max(0, replay_buffer)
        self._batch = max(1, batch_size)
        self._join_timeout = join_timeout
        self._hwm = send_hwm
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._users = 0  # SDK plug-ins sharing this transport (kept across fork: they are copied too)
        self._reset_state()
        # The span fast path, for span processors: converts a span on the thread that ends it
        # into ``batches`` (which survives fork).
        self.span_plans = span_plans
        if span_plans is not None:
            span_plans.batches = self.batches
        _live.add(self)

    # -- state (re-created in a forked child) -------------------------------------------------
    def _reset_state(self) -> None:
        self._queue: deque[Any] = deque()
        self._publisher = os.urandom(16)
        self._next_seq: dict[bytes, int] = {}
        self._sent: dict[str, int] = {}
        self._dropped: dict[tuple[str, str], int] = {}
        self._pending_count: dict[str, int] = {}
        self._in_hand = 0  # popped from the queue, not yet sent or counted as dropped
        # The sender thread's socket, for app threads too: see Sender._run and _send_ready.
        self._sock_lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        self._subs: set[bytes] = set()
        # Sent and not yet acknowledged by the collector: sent again to the next one (replay.py).
        self._replay = ReplayBuffer(self._replay_max)
        self._resend: deque[tuple[bytes, tuple[int, int, list[bytes]]]] = deque()
        self._resend_due = False
        self._resent = 0  # records sent again
        if getattr(self, "live_spans", None) is not None:
            self.live_spans.clear()  # type: ignore[union-attr]  # the parent's spans, in a forked child
        # Span records converted and encoded on app threads (span_plans), waiting for the sender.
        if hasattr(self, "batches"):
            self.batches.reset(self._publisher)
        else:
            self.batches = ReadyBatches(self._publisher, self._max, self._count_encode_error, self._on_pseudonyms,
                                        on_ready=self._send_ready)
        self._stopping = False
        self._flush_requested = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._started = False
        # Wakes the sender from its sleep (a pipe; closed once the sender is gone, see _wake).
        self._close_wake()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.connected = False
        # Since when no collector has listened (None while one does); set by the sender thread.
        self.away_since: float | None = time.monotonic()
        self.flush_gave_up: float | None = None  # when force_flush last gave up for want of one

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self.away_since = time.monotonic()  # a collector has had no chance to subscribe yet
            self._thread = threading.Thread(target=self._run, name="otel-telemetry-sender", daemon=True)
            self._thread.start()

    # -- app threads ----------------------------------------------------------------------------
    def enqueue(self, item: Any) -> None:
        """Called on the thread that ends a span / emits a record: must not block or raise."""
        q = self._queue
        if len(q) < self._max and not self._stopping:
            q.append(item)
            return
        try:
            cat = self._categorise_drop(item)
        except Exception:
            cat = "unknown"
        with self._lock:
            reason = SHUTDOWN if self._stopping else QUEUE_FULL
            self._dropped[(cat, reason)] = self._dropped.get((cat, reason), 0) + 1

    def _send_ready(self) -> None:
        """Called on the app thread that has just encoded a batch (ReadyBatches.flush): must not
        block or raise. If the socket is free (the sender thread asleep) and a collector listens,
        send the ready messages here: the sender would have to take the GIL from the app once
        per frame (pyzmq lets go of it around each one). Anything unusual — socket busy, no
        subscriber for the topic, a full pipe, shutdown — is left to the sender thread."""
        lock = self._sock_lock
        if not lock.acquire(blocking=False):
            return
        try:
            sock, rb = self._sock, self.batches
            if sock is None or not self._subs or self._stopping or self._resend_due or self._resend:
                return  # (a resend goes first: the sender thread's)
            while (msg := rb.pop_ready()) is not None:
                cat, topic, frames, count = msg
                try:
                    sent = self._listened(topic) and self._stamp_and_send(sock, topic, frames, count)
                except Exception:  # never into the app: the sender thread meets it again
                    log.debug("app-thread send failed", exc_info=True)
                    sent = False
                if not sent:  # nobody listens to the topic, a full pipe, or worse: the sender's
                    rb.unpop_ready(msg)
                    return
                with self._lock:
                    self._sent[cat] = self._sent.get(cat, 0) + count
        finally:
            lock.release()

    def _count_encode_error(self, category: str, n: int) -> None:
        self.count_drop(category, ENCODE_ERROR, n)

    def count_drop(self, category: str, reason: str, n: int = 1) -> None:
        """Count records rejected before they reach the queue (any thread)."""
        with self._lock:
            self._dropped[(category, reason)] = self._dropped.get((category, reason), 0) + n

    def counters(self) -> dict[str, Any]:
        """Exact once quiet: ``emitted == sent + sum(dropped) + queued``. Any thread."""
        with self._lock:
            by_cat: dict[str, dict[str, Any]] = {}
            for cat, n in self._sent.items():
                by_cat.setdefault(cat, {"emitted": 0, "sent": 0, "dropped": {}})["sent"] = n
            for (cat, reason), n in self._dropped.items():
                d = by_cat.setdefault(cat, {"emitted": 0, "sent": 0, "dropped": {}})
                d["dropped"][reason] = d["dropped"].get(reason, 0) + n
            waiting = dict(self._pending_count)
            for cat, n in self.batches.queued().items():
                waiting[cat] = waiting.get(cat, 0) + n
            for cat, n in waiting.items():
                by_cat.setdefault(cat, {"emitted": 0, "sent": 0, "dropped": {}})["queued"] = n
            dropped: dict[str, int] = {}
            for d in by_cat.values():
                d["emitted"] = d["sent"] + sum(d["dropped"].values()) + d.get("queued", 0)
                for reason, n in d["dropped"].items():
                    dropped[reason] = dropped.get(reason, 0) + n
            queued = len(self._queue) + sum(waiting.values())
            sent = sum(self._sent.values())
            return {
                "emitted": sent + sum(dropped.values()) + queued,
                "sent": sent,
                "dropped": dropped,
                "queued": queued,
                "connected": self.connected,
                "by_category": by_cat,
                "redacted": self._redaction_counts() if self._redaction_counts is not None else {},
                "redaction": self.redaction_site,
                # Sent records the collector has not yet confirmed as stored ("unacknowledged":
                # held to send again to the next collector), how many were sent again, and how
                # many lost that protection to the bound (not drops: they were sent).
                "replay": {"unacknowledged": self._replay.records, "acknowledged": self._replay.acked,
                           "resent": self._resent, "evicted": self._replay.evicted,
                           "bound": self._replay.max_records},
                # Started-span previews (sdk.live): not records, so outside the books above.
                **({"live_spans": self.live_spans.counters()} if self.live_spans is not None else {}),
            }

    def acquire(self) -> None:
        """A plug-in starts sharing this transport (any thread)."""
        with self._lock:
            self._users += 1

    def release(self, timeout: float = 30.0) -> bool:
        """A plug-in is done: the last one shuts the transport down, the others flush it."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        return self.shutdown(timeout) if last else self.force_flush(timeout)

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is sent or counted; honours ``timeout``. With no
        collector in sight for ``join_timeout`` it returns False at once: the records stay held
        for the next collector (or are counted at shutdown), and an app exiting without one never
        waits out the whole timeout (the SDK flushes each provider at exit)."""
        if not self._started or self._thread is None or not self._thread.is_alive():
            return not self._queue and not self.batches.busy()
        deadline = time.monotonic() + max(0.0, timeout)
        self._flush_requested = True
        self._wake()
        with self._cond:
            while self._queue or self._in_hand or self._pending_count or self.batches.busy():
                now = time.monotonic()
                left = deadline - now
                away = self.away_since
                if away is not None and now - away >= self._join_timeout:
                    self.flush_gave_up = now  # a shutdown right after does not wait a second time
                    return False
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Drain, say goodbye, close. Idempotent; returns within ``timeout``; any thread."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            already = self._stopping
            self._stopping = True
            self.batches.closed = True
            self._deadline = min(self._deadline, deadline)
        self._wake()
        thread = self._thread
        if thread is None:
            leftover = len(self._queue)
            if leftover and not already:
                self._drop_queue(SHUTDOWN)
            self._drop_app_side(SHUTDOWN)
            self._close_wake()
            return True
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
        self._close_wake()  # nobody reads it any more
        return True

    def _wake(self) -> None:
        """Any thread: cut the sender's current wait short (force_flush, shutdown). Under the
        lock, so that it never writes to a descriptor number _close_wake has freed for reuse."""
        with self._lock:
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):  # BlockingIOError: full, a wake-up is pending
                    os.write(self._wake_w, b"\0")

    def _close_wake(self) -> None:
        """Close the wake pipe (at shutdown once the sender thread is gone; in a forked child, the
        parent's copy); idempotent."""
        with self._lock:
            for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._wake_r = self._wake_w = -1


def _after_fork_in_child() -> None:
    for t in list(_live):
        was_started, was_stopped = t._started, t._stopping
        # A thread of the parent (its sender, say) may have held the lock at fork: in the child
        # it would stay held for ever.
        t._lock = threading.Lock()
        t._cond = threading.Condition(t._lock)
        t._reset_state()
        if was_stopped:  # shut down in the parent: stays shut (what it is given counts as shutdown)
            t._stopping = t.batches.closed = True
            t._close_wake()
        elif was_started:
            t.start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
