"""Tail sampling: hold each trace's spans for ``decision_wait``, then keep or drop the whole trace.

A trace is kept if any of its spans has status ERROR (``keep_errors``), lasted at least
``latency_threshold_ms``, or is a GenAI span (``keep_genai``: GenAI columns filled, or
``gen_ai.operation.name``); otherwise it is kept when its trace id falls under
``sampling_percentage`` — the rule of OTel's ``TraceIdRatioBased`` sampler (lower 64 bits of the
trace id below ratio × 2^64), so a trace an app head-sampled with ``OTEL_TRACES_SAMPLER=
traceidratio`` at the same or a lower ratio is kept here too.

Bounded: at most ``num_traces`` traces wait (a new one beyond that decides the oldest early), and
at most ``max_spans`` spans are held or waiting for the store (beyond that the oldest traces are
decided early, and if the store itself is behind, :meth:`TailSampler.reserve` says no and the
receiver pushes back as it does for a full store queue). Spans that arrive after their trace was
decided follow the decision (a bounded cache of decisions), else start a new trace.

Every decision and every span is counted (:meth:`TailSampler.counters`). Held spans live in
memory only: a collector killed with SIGKILL loses what it held (at most ``decision_wait`` worth);
SIGTERM decides everything at once and stores the kept traces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..store.schema import COLUMNS, GENAI_COLUMNS

log = logging.getLogger("otel_telemetry.collector.tail_sampling")

_CATEGORY, _TRACE, _STATUS, _DURATION = (COLUMNS.index(c) for c in ("category", "trace_id", "status",
                                                                  "duration_ms"))
_GENAI = tuple(COLUMNS.index(c) for c in GENAI_COLUMNS)
_LIMIT = 1 << 64
_DELIVER_ROWS = 1000  # spans per store batch from the sampler thread

Deliver = Callable[[dict[str, Any], list[Any], list[tuple[Any, ...]], float], bool]


@dataclass
class TailSamplingConfig:
    decision_wait: float = 5.0
    num_traces: int = 10000
    max_spans: int = 100000
    keep_errors: bool = True
    latency_threshold_ms: float | None = None
    keep_genai: bool = True
    sampling_percentage: float = 10.0


class _Trace:
    __slots__ = ("first", "items", "reason")

    def __init__(self, first: float) -> None:
        self.first = first
        self.items: list[tuple[dict[str, Any], Any, tuple[Any, ...]]] = []
        self.reason: str | None = None


class TailSampler:
    """``reserve``/``unreserve``/``add`` run on receiver threads; deciding and delivering on the
    sampler's own thread (``start``); ``shutdown(timeout)`` is idempotent."""

    def __init__(self, cfg: TailSamplingConfig, deliver: Deliver,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._deliver = deliver  # (resource, records, rows, timeout) -> taken?
        self._clock = clock
        self._bound = round(cfg.sampling_percentage / 100 * _LIMIT)
        self._cond = threading.Condition()
        self._traces: OrderedDict[str, _Trace] = OrderedDict()  # oldest first
        self._decided: OrderedDict[str, bool] = OrderedDict()
        self._decided_cap = max(1000, 2 * cfg.num_traces)
        self._ready: list[tuple[dict[str, Any], Any, tuple[Any, ...]]] = []
        self._held = self._inflight = self._reserved = 0
        self._stopping = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._kept = dict.fromkeys(("error", "latency", "genai", "sampled"), 0)
        self._c = dict.fromkeys(("traces_dropped", "spans_kept", "early_decisions", "late_kept",
                                 "late_dropped", "pushed_back"), 0)
        self._sampled_out: dict[str, int] = {}
        self._undelivered: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name="otel-tail-sampler", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float) -> bool:
        """Decide every held trace now, deliver the kept ones within ``timeout`` (caller's thread).
        What cannot be delivered in time is counted as ``undelivered``."""
        with self._cond:
            if not self._stopping:
                self._stopping = True
                self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            with self._cond:
                self._decide_all()
                self._count_undelivered(self._ready)
                self._ready = []
            return True
        thread.join(max(0.0, timeout) + 1.0)
        return not thread.is_alive()

    # -- receiver threads -------------------------------------------------------------------------
    def reserve(self, n: int) -> bool:
        """Room for ``n`` more spans; False = push back (nothing taken). Decides the oldest traces
        early while held spans are what fills the budget."""
        with self._cond:
            if self._stopping:
                return False
            budget = self.cfg.max_spans
            waiting = self._inflight + len(self._ready) + self._reserved
            if waiting and waiting + n > budget:  # the store is behind: push back
                self._c["pushed_back"] += 1
                return False
            while self._traces and self._held + waiting + n > budget:
                self._decide(next(iter(self._traces)), early=True)
            self._reserved += n
            return True

    def unreserve(self, n: int) -> None:
        with self._cond:
            self._reserved -= n

    def add(self, resource: dict[str, Any], items: list[tuple[Any, tuple[Any, ...]]]) -> None:
        """Hold reserved spans (``(record, row)`` pairs, rows with a trace id)."""
        with self._cond:
            self._reserved -= len(items)
            now = self._clock()
            for record, row in items:
                tid = row[_TRACE]
                trace = self._traces.get(tid)
                if trace is None:
                    decided = self._decided.get(tid)
                    if decided is not None:  # late span of a decided trace: same fate
                        if decided:
                            self._ready.append((resource, record, row))
                            self._c["late_kept"] += 1
                            self._c["spans_kept"] += 1
                        else:
                            self._drop_span(row)
                            self._c["late_dropped"] += 1
                        continue
                    if len(self._traces) >= self.cfg.num_traces:
                        self._decide(next(iter(self._traces)), early=True)
                    trace = self._traces[tid] = _Trace(now)
                trace.items.append((resource, record, row))
                self._held += 1
                if trace.reason is None:
                    trace.reason = self._reason(record, row)
            self._cond.notify_all()

    def counters(self) -> dict[str, Any]:
        """Any thread. ``sampled_out`` and ``undelivered`` are spans per category."""
        with self._cond:
            return {"held": self._held, "held_traces": len(self._traces),
                    "waiting_for_store": len(self._ready) + self._inflight,
                    "traces_kept": dict(self._kept), **self._c,
                    "sampled_out": dict(self._sampled_out), "undelivered": dict(self._undelivered)}

    # -- decisions (under the condition's lock) -------------------------------------------------
    def _reason(self, record: Any, row: tuple[Any, ...]) -> str | None:
        cfg = self.cfg
        if cfg.keep_errors and row[_STATUS] == "error":
            return "error"
        if cfg.latency_threshold_ms is not None and (row[_DURATION] or 0) >= cfg.latency_threshold_ms:
            return "latency"
        if cfg.keep_genai and (any(row[i] is not None for i in _GENAI)
                               or "gen_ai.operation.name" in (record[9] or ())):
            return "genai"
        return None

    def _drop_span(self, row: tuple[Any, ...]) -> None:
        cat = row[_CATEGORY]
        self._sampled_out[cat] = self._sampled_out.get(cat, 0) + 1

    def _decide(self, tid: str, early: bool = False) -> None:
        trace = self._traces.pop(tid)
        self._held -= len(trace.items)
        reason = trace.reason
        if reason is None and int(tid[16:], 16) < self._bound:
            reason = "sampled"
        self._decided[tid] = reason is not None
        if len(self._decided) > self._decided_cap:
            self._decided.popitem(last=False)
        if early:
            self._c["early_decisions"] += 1
        if reason is not None:
            self._kept[reason] += 1
            self._c["spans_kept"] += len(trace.items)
            self._ready.extend(trace.items)
        else:
            self._c["traces_dropped"] += 1
            for _, _, row in trace.items:
                self._drop_span(row)

    def _decide_all(self) -> None:
        while self._traces:
            self._decide(next(iter(self._traces)))

    def _count_undelivered(self, items: list[tuple[dict[str, Any], Any, tuple[Any, ...]]]) -> None:
        for _, _, row in items:
            cat = row[_CATEGORY]
            self._undelivered[cat] = self._undelivered.get(cat, 0) + 1

    # -- the sampler thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception:  # only bugs reach here; count what is left rather than lose it silently
            log.exception("tail sampler failed")
            with self._cond:
                self._decide_all()
                self._count_undelivered(self._ready)
                self._ready = []

    def _step(self) -> bool:
        """Decide what is due, deliver one batch of kept spans; False when stopped and empty."""
        with self._cond:
            while True:
                if self._stopping:
                    self._decide_all()
                else:
                    now, wait = self._clock(), self.cfg.decision_wait
                    while self._traces and next(iter(self._traces.values())).first + wait <= now:
                        self._decide(next(iter(self._traces)))
                if self._ready:
                    break
                if self._stopping:
                    return False
                due = next(iter(self._traces.values())).first + self.cfg.decision_wait - self._clock() \
                    if self._traces else 1.0
                self._cond.wait(min(max(due, 0.0), 1.0))
            batch, self._ready = self._ready[:_DELIVER_ROWS], self._ready[_DELIVER_ROWS:]
            self._inflight = len(batch)
        # Outside the lock: the store may make us wait; receivers keep adding meanwhile.
        start = 0
        while start < len(batch):
            resource = batch[start][0]
            end = start
            while end < len(batch) and batch[end][0] is resource:
                end += 1
            part = batch[start:end]
            if not self._deliver_part(resource, part):
                with self._cond:
                    self._count_undelivered(part)
            start = end
        with self._cond:
            self._inflight = 0
        return True

    def _deliver_part(self, resource: dict[str, Any], part: list[tuple[dict[str, Any], Any, tuple[Any, ...]]]) -> bool:
        """False: not taken by the store (the caller counts it as undelivered); never raises."""
        records, rows = [r for _, r, _ in part], [w for _, _, w in part]
        try:
            while not self._deliver(resource, records, rows, 0.1):
                with self._cond:
                    if self._stopping and time.monotonic() >= self._deadline:
                        return False
        except Exception:
            log.exception("tail sampler: delivering %d kept spans failed; counted as undelivered", len(part))
            return False
        return True
