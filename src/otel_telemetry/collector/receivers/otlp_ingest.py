"""What the OTLP/HTTP and OTLP/gRPC receivers share: decode → map → store → acknowledge, and counters.

A request is acknowledged only after every row it carries is committed: each resource batch goes
to :meth:`Pipeline.submit` with an ``on_commit`` callback, and the request thread waits for all
of them with a bounded timeout. If the store's queue stays full, or the commit does not come in
time, the answer is "overloaded, retry later" (HTTP 429/503, gRPC UNAVAILABLE). Retrying is safe:
uids come from the content (``otlp`` uid_base, span ids), so a batch that was in fact stored is
dropped by the unique index the second time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ...otlp import decode as otlp
from ..pipeline import Pipeline

log = logging.getLogger("otel_telemetry.otlp.decode")

SIGNALS = ("traces", "metrics", "logs")
# The partial_success field of Export<Signal>ServiceResponse that counts rejected items.
REJECTED_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
RETRY_AFTER_S = 1

# Outcomes of :meth:`Ingest.ingest`.
OK = "ok"
OVERLOADED = "overloaded"  # the store's queue stayed full: nothing (more) was taken
COMMIT_TIMEOUT = "commit_timeout"  # taken, but not committed in time: not acknowledged
SHUTTING_DOWN = "shutting_down"


@dataclass(slots=True)
class Outcome:
    status: str
    accepted: int = 0  # items committed (only meaningful when status == OK)
    rejected: int = 0  # items dropped individually (partial_success)
    error_message: str | None = None


@dataclass
class _Counters:
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> requests or items
    overload: dict[str, int] = field(default_factory=dict)  # reason -> answers
    partial: int = 0  # requests answered with partial_success


class _Commits:
    """Counts down the batches of one request; ``on_commit`` runs on the store writer thread."""

    __slots__ = ("_cond", "_pending")

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0

    def add(self) -> None:
        with self._cond:
            self._pending += 1

    def cancel(self) -> None:
        with self._cond:
            self._pending -= 1

    def on_commit(self) -> None:
        """Writer thread: must only count and notify, never block or raise."""
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending <= 0, max(0.0, timeout))


class Ingest:
    """Shared by the threads of one receiver; every method may run on any request thread."""

    def __init__(self, name: str, pipeline: Pipeline, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 submit_timeout: float = 0.25, commit_timeout: float = 5.0) -> None:
        self.name = name
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes
        self.submit_timeout = submit_timeout
        self.commit_timeout = commit_timeout
        self.stopping = False
        self._lock = threading.Lock()
        self._c = _Counters()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)

    # -- counters -----------------------------------------------------------------------------
    def count_request(self, signal: str | None) -> None:
        with self._lock:
            if signal in self._c.requests:
                self._c.requests[signal] += 1
            else:
                self._c.requests["other"] = self._c.requests.get("other", 0) + 1

    def count_rejected(self, reason: str, n: int = 1) -> None:
        """``reason``: malformed, too_large, unsupported_media_type, not_found, method_not_allowed,
        invalid_item (counts items, the others count requests)."""
        with self._lock:
            self._c.rejected[reason] = self._c.rejected.get(reason, 0) + n

    def count_overload(self, reason: str) -> None:
        with self._lock:
            self._c.overload[reason] = self._c.overload.get(reason, 0) + 1

    def counters(self, **extra: Any) -> dict[str, Any]:
        """Snapshot for the status table (any thread)."""
        with self._lock:
            c = self._c
            return {**extra, "requests": sum(c.requests.values()), "requests_by_signal": dict(c.requests),
                    "accepted": sum(c.accepted.values()), "accepted_by_signal": dict(c.accepted),
                    "rejected": dict(c.rejected), "overload": sum(c.overload.values()),
                    "overload_by_reason": dict(c.overload), "partial_success": c.partial,
                    "inflight": self._inflight}

    # -- in-flight tracking for orderly shutdown -----------------------------------------------
    def enter(self) -> bool:
        """Request thread: register a request; False once shutting down (answer "unavailable")."""
        with self._lock:
            if self.stopping:
                return False
            self._inflight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Shutdown thread: refuse new requests, wait for in-flight ones to be answered."""
        with self._lock:
            self.stopping = True
            return self._idle.wait_for(lambda: self._inflight <= 0, max(0.0, timeout))

    # -- the request path ----------------------------------------------------------------------
    def ingest(self, signal: str, body: bytes, *, json: bool) -> Outcome:
        """Request thread. Decode, map, store and wait for the commit (bounded).

        Raises :class:`otlp.OtlpDecodeError` for a malformed body (answer 400 / INVALID_ARGUMENT).
        Blocks at most about ``submit_timeout + commit_timeout``; must not be called on the store
        writer thread (it waits for that thread).
        """
        result = otlp.decode(signal, body, json=json)
        rejected, first_error = result.rejected, result.error_message
        unredactable = 0
        mapped: list[tuple[dict[str, Any], list[Any], list[tuple[Any, ...]]]] = []
        for resource, records, uid_base in result.batches:
            # Redacted before anything else sees them (store, forwarders, alerts).
            resource, records, dropped = self.pipeline.redact(result.kind, resource, records, "otlp")
            unredactable += dropped
            rows, kept, bad, err = self.pipeline.map_each(result.kind, resource, records, None, uid_base)
            rejected += bad
            first_error = first_error or err
            if rows:
                mapped.append((resource, kept, rows))
        if rejected:
            self.count_rejected("invalid_item", rejected)
        if unredactable:
            self.count_rejected("redaction_error", unredactable)
            first_error = first_error or f"{unredactable} item(s) dropped: redaction failed"
            rejected += unredactable
        outcome = self._store(signal, result.kind, mapped)
        outcome.rejected, outcome.error_message = rejected, first_error
        if outcome.status == OK:
            with self._lock:
                self._c.accepted[signal] += outcome.accepted
                self._c.partial += bool(rejected)
        else:
            self.count_overload(outcome.status)
        return outcome

    def _store(self, signal: str, kind: str,
               mapped: list[tuple[dict[str, Any], list[Any], list[tuple[Any, ...]]]]) -> Outcome:
        if not mapped:
            return Outcome(OK)
        if self.stopping:
            return Outcome(SHUTTING_DOWN)
        commits = _Commits()
        deadline = time.monotonic() + self.submit_timeout + self.commit_timeout
        items = 0
        for i, (resource, records, rows) in enumerate(mapped):
            # The first batch gets the short timeout (nothing taken yet: a quick 429 is best);
            # once part of the request is in, finish it within the overall budget rather than
            # leaving the client to resend what was already taken.
            timeout = self.submit_timeout if i == 0 else max(0.0, deadline - time.monotonic())
            commits.add()
            if not self.pipeline.submit(kind, resource, records, rows, timeout=timeout,
                                        on_commit=commits.on_commit):
                commits.cancel()
                log.debug("%s: store queue full, answering overloaded (%s)", self.name, signal)
                return Outcome(OVERLOADED)
            items += len(records)
        if not commits.wait(deadline - time.monotonic()):
            log.debug("%s: commit did not come in time (%s)", self.name, signal)
            return Outcome(COMMIT_TIMEOUT)
        return Outcome(OK, accepted=items)


_RESPONSES: dict[str, type[Message]] = {
    "traces": ExportTraceServiceResponse, "metrics": ExportMetricsServiceResponse, "logs": ExportLogsServiceResponse,
}


def response(signal: str, outcome: Outcome) -> Message:
    """Export<Signal>ServiceResponse; ``partial_success`` is set only when items were rejected."""
    msg = _RESPONSES[signal]()
    if outcome.rejected:
        setattr(msg.partial_success, REJECTED_FIELD[signal], outcome.rejected)
        msg.partial_success.error_message = outcome.error_message or "some items were rejected"
    return msg


def status_pb(code: int, message: str) -> bytes:
    """google.rpc.Status{code, message} encoded by hand (googleapis-common-protos is not a
    runtime dependency)."""
    msg = message.encode("utf-8", "replace")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


def retry_info_pb(seconds: int) -> bytes:
    """google.rpc.RetryInfo{retry_delay: Duration{seconds}}, for gRPC's retryinfo-bin trailer."""
    duration = b"\x08" + _varint(seconds)
    return b"\x0a" + _varint(len(duration)) + duration


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

