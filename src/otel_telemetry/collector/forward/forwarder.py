"""OTLP forwarding: everything the store accepted is re-exported to one or more OTLP endpoints.

One :class:`Forwarder` per configured target, registered as a pipeline ``Consumer``::

    receiver thread --consume()--> inbox (bounded, in memory)
        encoder thread: inbox → OTLP requests (several consumed batches per request) → queue
        sender thread:  queue head → downstream; delete on ack / permanent refusal, else back off

``consume`` only appends to a list under a lock and counts, so a slow or dead downstream never
slows the receivers or the store. With ``queue_dir`` the queue is a SQLite file (see
``forward_queue``): the encoder persists each batch within milliseconds, shutdown persists what is
still in the inbox, and a new Forwarder on the same directory re-sends whatever was not
acknowledged. Without it, what is still queued at shutdown is dropped and counted (``shutdown``).

Counters are in items (spans, metric data points, log records) except ``failed`` and ``retries``,
which count attempts. ``consumed + restored == sent + queued + sum(dropped)`` at all times.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ...otlp.encode import KINDS, SIGNAL_OF_KIND, encode
from .client import Client, Outcome, make_client
from .config import ForwardTarget, parse_forward_config
from .queue import DiskQueue, MemoryQueue, Request, RequestQueue

__all__ = ["ForwardTarget", "Forwarder", "parse_forward_config"]

log = logging.getLogger("otel_telemetry.collector.forward.forwarder")

MAX_RETRY_AFTER = 300.0
INBOX_BATCHES = 10_000  # consumed batches waiting for the encoder, whatever the queue limit
DROP_LOG_INTERVAL = 10.0
LINGER = 0.05  # seconds the encoder waits for more batches before encoding a partial request


class Forwarder:
    """Forwards consumed batches to one target. See the module docstring for the threads."""

    def __init__(self, target: ForwardTarget) -> None:
        self.target = target
        self._limit = target.queue_limit
        self._skip = frozenset(SIGNAL_OF_KIND.values()) - set(target.signals)
        self._cond = threading.Condition()
        self._inbox: list[tuple[str, dict[str, Any], list[Any]]] = []
        self._inbox_items = 0
        self._batches = 0  # consumed batches not yet resolved (inbox + queue): the queue bound
        self._c: dict[str, int] = {"consumed": 0, "restored": 0, "sent": 0, "queued": 0, "failed": 0,
                                   "retries": 0, "requests": 0}
        self._dropped: dict[str, int] = {}
        self._closing = False
        self._stop = threading.Event()  # shutdown: no more retries, backoff waits end
        self._wake = threading.Event()  # new requests in the queue
        self._encoder_done = threading.Event()
        self._queue: RequestQueue | None = None
        self._client: Client | None = None
        self._threads: list[threading.Thread] = []
        self._deadline = float("inf")
        self._down_since: float | None = None
        self._last_drop_log: dict[str, float] = {}
        self._result: bool | None = None

    # --- any thread ---------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """Snapshot: consumed, restored (from disk at start), sent, queued, failed, retries,
        requests (acknowledged), dropped {reason: items}."""
        with self._cond:
            return {**self._c, "dropped": dict(self._dropped)}

    def _drop(self, reason: str, items: int, batches: int = 0) -> None:
        """Caller holds no lock; items leave ``queued`` for ``dropped[reason]``."""
        if items <= 0 and batches <= 0:
            return
        with self._cond:
            if items > 0:
                self._dropped[reason] = self._dropped.get(reason, 0) + items
            self._c["queued"] -= items
            self._batches -= batches

    # --- receiver threads ---------------------------------------------------------------------

    def consume(self, kind: str, resource: dict[str, Any], records: list[Any]) -> None:
        """Receiver thread, after the store accepted the batch. Appends to the inbox and counts;
        never blocks on the downstream, the disk or encoding, and never raises."""
        n = len(records)
        if not n or SIGNAL_OF_KIND.get(kind) in self._skip:
            return  # empty, or a signal this target does not take (``signals``): not ours to count
        with self._cond:
            self._c["consumed"] += n
            if self._closing or kind not in KINDS:
                reason = "stopped" if self._closing else "unknown_kind"
                self._dropped[reason] = self._dropped.get(reason, 0) + n
                return
            if self._batches >= self._limit or len(self._inbox) >= INBOX_BATCHES:
                self._dropped["queue_full"] = self._dropped.get("queue_full", 0) + n
                return
            self._inbox.append((kind, resource, records))
            self._batches += 1
            self._inbox_items += n
            self._c["queued"] += n
            if self._inbox_items >= self.target.max_batch_items or len(self._inbox) == 1:
                self._cond.notify()

    # --- lifecycle (the collector's main thread) ----------------------------------------------

    def start(self) -> None:
        """Open the queue (restoring persisted requests) and start the two threads.
        Raises forward_queue.QueueLocked if another forwarder holds ``queue_dir``."""
        if self._threads or self._closing:
            return
        t = self.target
        self._queue = DiskQueue(t.queue_dir) if t.queue_dir else MemoryQueue()
        items, batches = self._queue.totals()
        with self._cond:
            self._c["restored"] += items
            self._c["queued"] += items
            self._batches += batches
        try:
            self._client = make_client(t.protocol, t.endpoint, dict(t.headers), t.compression)
        except BaseException:
            self._queue.close()
            raise
        name = t.name or urlsplit(t.endpoint).netloc
        self._threads = [threading.Thread(target=self._encode_loop, name=f"forward-enc-{name}", daemon=True),
                         threading.Thread(target=self._send_loop, name=f"forward-send-{name}", daemon=True)]
        for th in self._threads:
            th.start()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Idempotent; safe before start. Persists (queue_dir) or drops-and-counts what is still
        queued, sends what it can until ``timeout`` without retrying, ends backoff waits at once.
        True if both threads finished in time."""
        with self._cond:
            if self._closing:
                return bool(self._result)
            self._closing = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
        self._stop.set()
        if not self._threads:
            try:
                if self.target.queue_dir:  # consumed before start: persist rather than lose it
                    self._queue = DiskQueue(self.target.queue_dir)
                    self._encode_pending()
                    self._queue.close()
            except Exception as exc:
                log.error("forwarder %s: cannot persist at shutdown: %s", self.target.label, exc)
            self._drop_inbox("shutdown")
            self._result = True
            return True
        enc, snd = self._threads
        enc.join(max(0.0, self._deadline - time.monotonic()))
        snd.join(max(0.0, self._deadline - time.monotonic() - 0.2))
        if snd.is_alive() and self._client is not None:
            self._client.abort()  # a send hanging on a dead downstream
            snd.join(1.0)
        self._result = not (enc.is_alive() or snd.is_alive())
        if self._result:
            assert self._queue is not None and self._client is not None
            self._queue.close()
            self._client.close()
        return self._result

    # --- encoder thread -----------------------------------------------------------------------

    def _encode_loop(self) -> None:
        """Encoder thread: inbox → requests → queue. Must not touch the network."""
        try:
            while True:
                with self._cond:
                    while not self._inbox and not self._closing:
                        self._cond.wait(0.5)
                    if not self._inbox and self._closing:
                        return
                    # Linger briefly so several consumed batches share one request / transaction.
                    until = time.monotonic() + LINGER
                    while (self._inbox_items < self.target.max_batch_items and not self._closing
                           and (left := until - time.monotonic()) > 0):
                        self._cond.wait(left)
                self._encode_pending()
        except Exception:
            log.exception("forwarder %s: encoder failed", self.target.label)
            self._drop_inbox("internal_error")
        finally:
            self._encoder_done.set()
            self._wake.set()

    def _drop_inbox(self, reason: str) -> None:
        with self._cond:
            inbox, self._inbox, self._inbox_items = self._inbox, [], 0
        self._drop(reason, sum(len(r) for _, _, r in inbox), len(inbox))

    def _encode_pending(self) -> None:
        with self._cond:
            inbox, self._inbox, self._inbox_items = self._inbox, [], 0
        requests: list[Request] = []
        for kind in KINDS:
            chunk: list[tuple[dict[str, Any], list[Any]]] = []
            items = batches = 0
            for k, resource, records in inbox:
                if k != kind:
                    continue
                start = 0
                while start < len(records):
                    take = min(len(records) - start, self.target.max_batch_items - items)
                    chunk.append((resource, records[start:start + take]))
                    items += take
                    start += take
                    batches += start == len(records)  # a batch counts in the chunk that ends it
                    if items >= self.target.max_batch_items:
                        requests.extend(self._encode(kind, chunk, items, batches))
                        chunk, items, batches = [], 0, 0
            if chunk:
                requests.extend(self._encode(kind, chunk, items, batches))
        if not requests:
            return
        assert self._queue is not None
        try:
            self._queue.put(requests)
        except Exception as exc:
            log.error("forwarder %s: cannot persist %d requests: %s", self.target.label, len(requests), exc)
            for r in requests:
                self._drop("persist_error", r.items, r.batches)
            return
        self._wake.set()

    def _encode(self, kind: str, chunk: list[tuple[dict[str, Any], list[Any]]], items: int,
                batches: int) -> list[Request]:
        """Encoder thread: one request, or [] with the items counted as dropped."""
        try:
            enc = encode(kind, chunk)
        except Exception:
            log.exception("forwarder %s: cannot encode %d %s records", self.target.label, items, kind)
            self._drop("unencodable", items, batches)
            return []
        if enc.bad:
            self._drop("unencodable", enc.bad)
        if not enc.items:
            self._drop("", 0, batches)
            return []
        return [Request(kind, enc.body, enc.items, batches)]

    # --- sender thread ------------------------------------------------------------------------

    def _backoff(self, attempt: int, outcome: Outcome) -> float:
        if outcome.retry_after is not None:
            return min(outcome.retry_after, MAX_RETRY_AFTER)
        t = self.target
        base = min(t.retry_max, t.retry_initial * 2 ** min(attempt - 1, 30))
        return min(t.retry_max, base * random.uniform(0.5, 1.5))

    def _send_loop(self) -> None:
        """Sender thread: the only one that talks to the downstream. Must not touch the inbox."""
        assert self._queue is not None and self._client is not None
        queue, client, attempt = self._queue, self._client, 0
        try:
            while True:
                self._wake.clear()
                try:
                    req = queue.peek()
                except Exception:  # e.g. the queue file became unreadable: keep trying, slowly
                    log.exception("forwarder %s: cannot read the queue", self.target.label)
                    if self._stop.wait(self.target.retry_max):
                        return
                    continue
                if req is None:
                    if self._encoder_done.is_set():
                        return
                    self._wake.wait(0.5)
                    continue
                timeout = self.target.timeout
                if self._stop.is_set():
                    timeout = min(timeout, self._deadline - time.monotonic())
                    if timeout <= 0:
                        return
                outcome = client.send(req.kind, req.body, timeout)
                if outcome.ok or not outcome.retryable:
                    self._resolve(queue, req, outcome)
                    attempt = 0
                    continue
                self._note_failure(outcome)
                if self._stop.is_set():
                    return  # shutdown cuts retries short; the request stays queued
                attempt += 1
                with self._cond:
                    self._c["retries"] += 1
                if self._stop.wait(self._backoff(attempt, outcome)):
                    return  # shutdown during the backoff: no further attempt
        except Exception:
            log.exception("forwarder %s: sender failed", self.target.label)
        finally:
            if not queue.persistent and self._closing:
                self._encoder_done.wait(max(0.0, self._deadline - time.monotonic()))
                for r in queue.drain():
                    self._drop("shutdown", r.items, r.batches)

    def _resolve(self, queue: RequestQueue, req: Request, outcome: Outcome) -> None:
        """Sender thread: the request is done (acknowledged or permanently refused); count it."""
        queue.remove(req)
        if outcome.ok:
            if self._down_since is not None:
                log.info("forwarder %s: downstream back after %.1fs", self.target.label,
                         time.monotonic() - self._down_since)
                self._down_since = None
            rejected = min(outcome.rejected, req.items)
            with self._cond:
                self._c["sent"] += req.items - rejected
                self._c["queued"] -= req.items - rejected
                self._c["requests"] += 1
                self._batches -= req.batches
            if rejected:
                log.warning("forwarder %s: downstream rejected %d of %d items: %s", self.target.label,
                            rejected, req.items, outcome.detail)
                self._drop("rejected", rejected)
            return
        with self._cond:
            self._c["failed"] += 1
        now = time.monotonic()
        if now - self._last_drop_log.get(outcome.reason, -1e9) >= DROP_LOG_INTERVAL:  # no log flood
            self._last_drop_log[outcome.reason] = now
            log.warning("forwarder %s: dropped %d %s items, permanent error (logged at most every %.0fs): %s",
                        self.target.label, req.items, req.kind, DROP_LOG_INTERVAL, outcome.detail)
        self._drop(outcome.reason, req.items, req.batches)

    def _note_failure(self, outcome: Outcome) -> None:
        """Sender thread: a retryable failure; logs once per outage, not per attempt."""
        with self._cond:
            self._c["failed"] += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("forwarder %s: export failed, will retry: %s", self.target.label, outcome.detail)
