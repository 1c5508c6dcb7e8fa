"""The transport's sender thread: owns the XPUB socket, converts queued items, stamps sequence
numbers and sends; a mixin of :class:`otel_telemetry.sdk.transport.Transport` (its state lives there).

Everything here runs on the one sender thread, except what ``Transport`` calls from other threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
import zmq.auth

from .. import wire
from .batches import ReadyBatches, pop_up_to
from .curve import apply_curve
from .live import LiveSpans
from .replay import ReplayBuffer
from .sender_prepare import ENCODE_ERROR, Converter, Dropped, Prepared, Preparer  # noqa: F401  # also this module's API

log = logging.getLogger("otel_telemetry.sdk.transport")

# Drop reasons (counter names).
QUEUE_FULL, NO_COLLECTOR, SHUTDOWN = "queue_full", "no_collector", "shutdown"
MAX_DELAY = 0.05  # seconds a partial batch may wait in the queue before it is sent
IDLE_WAIT = 0.05  # the sender's longest sleep; force_flush and shutdown wake it at once


class Sender(Preparer):
    """The sender thread's half of ``Transport``."""

    endpoint: str
    batches: ReadyBatches
    _queue: deque[Any]
    _lock: threading.Lock
    _cond: threading.Condition
    _convert: Converter
    _learn: Callable[[list[Any]], None] | None
    _categorise_drop: Callable[[Any], str]
    _batch: int
    _join_timeout: float
    _hwm: int
    _curve_server_key: str | None
    _curve_client_key_file: str | None
    _publisher: bytes
    _next_seq: dict[bytes, int]
    _sent: dict[str, int]
    _dropped: dict[tuple[str, str], int]
    _pending_count: dict[str, int]
    _in_hand: int
    _stopping: bool
    _flush_requested: bool
    _deadline: float
    away_since: float | None
    flush_gave_up: float | None
    _wake_r: int
    _sock_lock: threading.Lock
    _sock: zmq.Socket | None
    _subs: set[bytes]
    _replay: ReplayBuffer
    _resend: deque[tuple[bytes, tuple[int, int, list[bytes]]]]
    _resend_due: bool
    _max: int
    _flags: int
    live_spans: LiveSpans | None
    connected: bool

    def _drop_queue(self, reason: str) -> None:
        counts: dict[str, int] = {}
        for item in pop_up_to(self._queue):
            try:
                cat = self._categorise_drop(item)
            except Exception:
                cat = "unknown"
            counts[cat] = counts.get(cat, 0) + 1
        self._count_drops(counts, reason)

    def _count_drops(self, counts: dict[str, int], reason: str) -> None:
        """Add ``{category: n}`` to the drop counters under ``reason`` (one lock for all)."""
        with self._lock:
            for cat, n in counts.items():
                self._dropped[(cat, reason)] = self._dropped.get((cat, reason), 0) + n

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.XPUB)
        # The socket is used under _sock_lock only: by this thread while it works (it lets go
        # while it sleeps, in _wait) and by an app thread that has just encoded a batch
        # (Transport._send_ready), so that thread sends it without waking us to take the GIL.
        self._sock_lock.acquire()
        try:
            sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # see re-subscribes from a restarted collector
            # A pipe only while connected: a collector that goes away unsubscribes at once, and
            # what comes meanwhile is held here (numbered at send) instead of queueing in a pipe
            # whose contents a reconnect would deliver ahead of the resend.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            if self._apply_curve(sock):
                sock.connect(self.endpoint)
            # else: never connected, so no collector ever subscribes and every record is counted
            # as a no_collector drop (the error was logged once).
            self._sock = sock
            self._loop(sock)
        except Exception:
            log.exception("otel-telemetry sender stopped on an unexpected error; remaining records dropped")
            self.batches.closed = True  # app threads stop converting: what follows is counted at enqueue
            self._drop_queue(SHUTDOWN)
            self._drop_app_side(SHUTDOWN)
            with self._lock:  # records in messages it held: counted, not just forgotten
                held, self._pending_count = self._pending_count, {}
            self._count_drops(held, SHUTDOWN)
        finally:
            self._sock = None  # still under _sock_lock: no app thread holds the socket now
            self._sock_lock.release()
            # Linger only as long as shutdown allows, so the goodbye and last frames get out.
            left = self._deadline - time.monotonic() if self._deadline != float("inf") else 0.0
            sock.close(linger=int(max(0.0, min(left, 2.0)) * 1000))
            ctx.term()
            with self._cond:
                self._in_hand = 0
                self._pending_count.clear()
                self._cond.notify_all()

    def _apply_curve(self, sock: zmq.Socket) -> bool:
        return apply_curve(sock, self._curve_server_key, self._curve_client_key_file, self.endpoint)

    def _loop(self, sock: zmq.Socket) -> None:
        subs = self._subs  # read by app threads under _sock_lock (Transport._send_ready)
        packer = wire.new_packer()
        join_deadline = time.monotonic() + self._join_timeout
        away_deadline = float("inf")  # set at shutdown while no collector listens
        pending: list[tuple[str, bytes, list[bytes], int]] = []  # (category, topic, frames, count)
        # Only the wake pipe: the socket may be in an app thread's hands while we sleep, so news
        # from it (subscriptions, acknowledgements) is read when we wake, at most IDLE_WAIT later.
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        q = self._queue
        rb = self.batches
        replay = self._replay
        first_seen: float | None = None  # when a partial batch in the queue was first seen
        live = self.live_spans
        while True:
            self._read_subscriptions(sock, subs)
            self.connected = bool(subs)
            if subs:
                self.away_since = None
            elif self.away_since is None:
                self.away_since = time.monotonic()
            if live is not None and live.waiting():  # spans in progress (sdk.live), opt-in
                try:
                    live.announce(sock, packer, self._convert, self._listened, self._publisher,
                                  self._flags, bool(subs) and not self._stopping)
                except Exception:  # a preview must never stop the sender of the records
                    log.debug("announcing spans in progress failed", exc_info=True)
                    live.dropped += 1
            now = time.monotonic()
            stopping = self._stopping
            if stopping and now >= self._deadline:
                self._give_up(pending, SHUTDOWN if subs else NO_COLLECTOR)
                self._resend.clear()
                self._drop_queue(SHUTDOWN)
                self._drop_app_side(SHUTDOWN)
                break
            if self._resend_due:
                # A collector (re)subscribed: what the last one did not acknowledge goes first.
                self._resend_due = False
                self._resend = deque(replay.pending())
            if self._resend:
                if not subs:
                    self._resend.clear()  # gone again: the next collector gets them
                elif not self._resend_some(sock):
                    sock.poll(5, zmq.POLLOUT | zmq.POLLIN)
                continue
            app_side = rb.busy()  # records converted (and maybe encoded) on app threads
            if not subs and (pending or q or app_side):
                # No collector listens (not yet, or it is restarting): hold what comes, encoded but
                # not numbered, up to the replay bound; the oldest beyond it is a counted drop.
                if stopping and away_deadline == float("inf"):
                    # A flush that gave up waiting for a collector, none in sight since: no second wait.
                    gave_up, away = self.flush_gave_up, self.away_since
                    waited = gave_up is not None and away is not None and away <= gave_up
                    away_deadline = now if waited else now + self._join_timeout
                if (replay.enabled or now < join_deadline) and not (stopping and now >= away_deadline):
                    if not self._hold_away(q, rb, pending, packer, stopping or self._flush_requested):
                        self._wait(poller, 0.01 if now < join_deadline or stopping else IDLE_WAIT)
                    continue
                self._give_up(pending, NO_COLLECTOR)
                self._drop_queue(NO_COLLECTOR)
                self._drop_app_side(NO_COLLECTOR)
                continue
            if pending:
                if self._send_pending(sock, pending):
                    continue
                # The collector is slow: wait for room (or news) without spinning.
                sock.poll(5, zmq.POLLOUT | zmq.POLLIN)
                continue
            if app_side:
                self._in_hand = 1
                ready = rb.take_ready()
                if ready:
                    pending = self._hold(ready)
                    continue
                self._in_hand = 0
                due = rb.oldest() + MAX_DELAY
                if rb.has_records() and (stopping or self._flush_requested or now >= due):
                    rb.drain()  # a partial batch nobody filled: encode it here
                    continue
            if not q:
                if app_side:  # another thread is encoding, or a partial batch waits
                    self._wait(poller, min(IDLE_WAIT, due - now))
                    continue
                self._flush_requested = False
                self._notify()
                if stopping:
                    if subs and replay.records and (replay.acks_seen or replay.acks_promised):
                        # Everything is sent: wait (within the deadline) for the collector to
                        # acknowledge it, so what is still unconfirmed at exit is known. A busy
                        # collector may not have sent its first acknowledgement yet: it said it
                        # would when it subscribed (wire.ACKS_SUBSCRIPTION).
                        self._wait(poller, 0.01)
                        continue
                    break
                self._wait(poller, IDLE_WAIT)  # force_flush and shutdown wake us sooner
                continue
            if len(q) < self._batch and not stopping and not self._flush_requested:
                # Let a batch fill up (bounded by MAX_DELAY): fewer, larger messages mean fewer
                # wake-ups taking the GIL from the app thread.
                if first_seen is None:
                    first_seen = now
                if now - first_seen < MAX_DELAY:
                    self._wait(poller, MAX_DELAY - (now - first_seen))
                    continue
            first_seen = None
            pending = self._prepare(q, packer)
        if subs:
            self._say_bye(sock, packer)
        self._notify()

    def _hold_away(self, q: deque[Any], rb: ReadyBatches, pending: list[tuple[str, bytes, list[bytes], int]],
                   packer: Any, hurry: bool) -> bool:
        """While no collector listens: turn queued items and app-side batches into messages held
        in ``pending`` (not numbered: numbers are stamped at send), the oldest beyond the bound
        dropped and counted ``no_collector``. False when there was nothing to do."""
        did = False
        if rb.busy():
            self._in_hand = 1
            ready = rb.take_ready()
            if ready:
                pending.extend(self._hold(ready))
                did = True
            else:
                self._in_hand = 0
                if rb.has_records() and (hurry or time.monotonic() >= rb.oldest() + MAX_DELAY):
                    rb.drain()
                    did = True
        if q:
            pending.extend(self._prepare(q, packer))
            did = True
        bound = self._replay.max_records if self._replay.enabled else self._max
        held = sum(m[3] for m in pending)
        while pending and held > bound:
            cat, _, _, count = pending.pop(0)
            held -= count
            self._settle(cat, count, NO_COLLECTOR)
        return did

    def _resend_some(self, sock: zmq.Socket) -> bool:
        """Send the unacknowledged messages again, as they went out the first time (same sequence
        numbers: the store keeps one row per uid); True when all went, False on a full pipe."""
        resend = self._resend
        while resend:
            topic, (_, count, frames) = resend[0]
            if self._listened(topic):
                try:
                    sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    return False
                self._resent += count
            resend.popleft()
        return True

    def _hold(self, msgs: list[tuple[str, bytes, list[bytes], int]]) -> list[tuple[str, bytes, list[bytes], int]]:
        """Messages encoded on app threads become the sender's pending ones (counted as such)."""
        with self._lock:
            for cat, _, _, count in msgs:
                self._pending_count[cat] = self._pending_count.get(cat, 0) + count
            self._in_hand = 0
        return msgs

    def _drop_app_side(self, reason: str) -> None:
        self._count_drops(self.batches.drop_all(), reason)

    def _wait(self, poller: zmq.Poller, seconds: float) -> None:
        """Sleep until someone calls :meth:`_wake` or ``seconds`` pass, with the socket free for
        app threads meanwhile."""
        self._sock_lock.release()
        try:
            poller.poll(max(1, int(seconds * 1000)))
            with contextlib.suppress(OSError):  # BlockingIOError: nobody woke us, the usual case
                os.read(self._wake_r, 4096)
        finally:
            self._sock_lock.acquire()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _read_subscriptions(self, sock: zmq.Socket, subs: set[bytes]) -> None:
        """Subscriptions (a collector came or went) and acknowledgements (``wire.decode_ack``)."""
        # Checking EVENTS first is far cheaper than a recv that raises zmq.Again every turn.
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            first = msg[:1]
            if msg[1:] == wire.ACKS_SUBSCRIPTION and first in (b"\x00", b"\x01"):
                self._replay.acks_promised = first == b"\x01"  # not a topic: no record goes there
            elif first == b"\x01":
                subs.add(msg[1:])
                if self._replay.records:  # a new or restarted collector: send it what is unconfirmed
                    self._resend_due = True
            elif first == b"\x00":
                subs.discard(msg[1:])
            else:
                ack = wire.decode_ack(msg)
                if ack is not None and ack[0] == self._publisher:
                    for topic, next_seq in ack[1].items():
                        self._replay.ack(topic, next_seq)

    def _send_pending(self, sock: zmq.Socket, pending: list[tuple[str, bytes, list[bytes], int]]) -> bool:
        """Send what the pipe takes; True if everything went (or was counted)."""
        while pending:
            cat, topic, frames, count = pending[0]
            if not self._listened(topic):
                self._settle(cat, count, NO_COLLECTOR)
                pending.pop(0)
                continue
            if not self._stamp_and_send(sock, topic, frames, count):
                return False
            self._settle(cat, count, None)
            pending.pop(0)
        return True

    def _listened(self, topic: bytes) -> bool:
        """A subscription covers ``topic`` (libzmq would drop it without a word otherwise)."""
        return any(topic.startswith(s) for s in self._subs)

    def _stamp_and_send(self, sock: zmq.Socket, topic: bytes, frames: list[bytes], count: int) -> bool:
        """Hand one message to the socket (the caller holds ``_sock_lock``); False if the pipe
        is full (zmq.Again). The sequence number is stamped only now, so records the app drops
        never leave a gap the collector would count a second time."""
        seq = self._next_seq.get(topic, 0)
        frames[1] = wire.restamp(frames[1], seq, self._flags)
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._next_seq[topic] = seq + count
        self._replay.add(topic, seq, count, frames)  # kept until the collector acknowledges it
        return True

    def _settle(self, cat: str, count: int, drop_reason: str | None) -> None:
        with self._lock:
            self._pending_count[cat] -= count
            if not self._pending_count[cat]:
                del self._pending_count[cat]
            if drop_reason is None:
                self._sent[cat] = self._sent.get(cat, 0) + count
            else:
                self._dropped[(cat, drop_reason)] = self._dropped.get((cat, drop_reason), 0) + count

    def _give_up(self, pending: list[tuple[str, bytes, list[bytes], int]], reason: str) -> None:
        for cat, _, _, count in pending:
            self._settle(cat, count, reason)
        pending.clear()

    def _say_bye(self, sock: zmq.Socket, packer: Any) -> None:
        frames = wire.encode_bye(packer, self._publisher,
                                 {t.decode(): s for t, s in self._next_seq.items()})
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            log.debug("goodbye not sent: pipe full")
        # Give libzmq a moment to move the last frames into the kernel before the socket goes.
        end = min(self._deadline, time.monotonic() + 0.5)
        while time.monotonic() < end:
            if sock.poll(1, zmq.POLLOUT):
                break
