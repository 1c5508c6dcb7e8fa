"""Sequence numbers of the ZeroMQ receiver: gaps, resends, and what may be acknowledged.

Apps number records per (publisher, topic) from 0 (``wire``). For each such key this keeps the
next number expected and the ranges still missing. A missing range is counted as a gap when it
is seen; a resend that fills it later takes it back (``recovered``). The number below which every
record has arrived is the checkpoint committed with each batch, and what the collector
acknowledges once that batch is committed (:class:`Acks`): never past a range still missing, so
the app keeps it until it arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

# The largest gap a real publisher can leave: what its send pipe, its replay buffer and our receive
# queue can hold, with room to spare. A larger jump is rejected, not counted.
MAX_GAP = 1 << 24
MAX_MISSING = 256  # missing ranges remembered per key; older ones stay counted as gaps
# How long a missing range may hold the acknowledgements back. An app resends what it holds as soon
# as it (re)subscribes, so a range still missing after this is one no app holds any more (lost, or
# forgotten past the app's bound): it stays counted as a gap, and acknowledgements move past it,
# or the app would keep everything after it until its bound and shutdown waited for nothing.
# While the app is still resending on that key (a replayed message came within the wait), the wait
# goes on: a loaded collector can take longer than this to work through a resend that holds it.
MISSING_WAIT = 10.0

Key = tuple[bytes, str]  # (publisher id, topic)


class Sequences:
    """Receive thread (``observe``, ``bye``); ``counters`` from any thread."""

    def __init__(self, checkpoints: dict[Key, int], clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._next = dict(checkpoints)
        self._missing: dict[Key, list[list[Any]]] = {}  # [start, end, seen at] not received yet
        self._replaying: dict[Key, float] = {}  # when a replayed message last came, per key
        self.gaps: dict[str, int] = {}
        self.replayed = 0  # messages that came again (a resend, or a range stored before)
        self.recovered = 0  # records of counted gaps that a resend delivered after all

    def observe(self, key: Key, category: str, seq: int, count: int) -> int | None:
        """A message of ``count`` records from ``seq``: the key's new checkpoint (everything below
        it has arrived), or None for a sequence number no real publisher can have (not counted
        here; the caller rejects the message)."""
        with self._lock:
            expected = self._next.get(key)
            if expected is None and seq <= MAX_GAP:
                # Numbering starts at 0: a first message further on means its predecessors are not
                # in this store (a collector died before committing them): a gap until a resend.
                expected = 0
            if expected is not None and seq - expected > MAX_GAP:
                return None
            if expected is not None and seq > expected:
                self._gap(key, category, expected, seq)
            elif expected is not None and seq < expected:
                self.replayed += 1
                self._replaying[key] = self._clock()
                self._fill(key, category, seq, seq + count)
            new_next = max(expected or 0, seq + count)
            self._next[key] = new_next
            missing = self._missing.get(key)
            if missing:
                cutoff = self._clock() - MISSING_WAIT
                if self._replaying.get(key, cutoff - 1.0) < cutoff:  # no resend under way on this key
                    missing[:] = [r for r in missing if r[2] >= cutoff]  # given up: stay counted as gaps
                if not missing:
                    del self._missing[key]
            return min(r[0] for r in missing) if missing else new_next

    def bye(self, key: Key, category: str, final: int) -> bool:
        """The publisher's last numbers (its goodbye): records it sent after ours are gaps.
        False for an impossible number (the caller counts it)."""
        with self._lock:
            expected = self._next.get(key)
            if expected is None:
                return True
            if final - expected > MAX_GAP:
                return False
            if final > expected:
                self._gap(key, category, expected, final)
                self._next[key] = final
            return True

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {"gaps": dict(self.gaps), "gaps_total": sum(self.gaps.values()), "replayed": self.replayed,
                    "recovered": self.recovered, "publishers": len({p for p, _ in self._next})}

    def _gap(self, key: Key, category: str, start: int, end: int) -> None:
        self.gaps[category] = self.gaps.get(category, 0) + end - start
        ranges = self._missing.setdefault(key, [])
        ranges.append([start, end, self._clock()])
        if len(ranges) > MAX_MISSING:
            del ranges[0]  # forgotten: stays counted as a gap even if it arrives after all

    def _fill(self, key: Key, category: str, start: int, end: int) -> None:
        ranges = self._missing.get(key)
        if not ranges:
            return
        kept: list[list[Any]] = []
        filled = 0
        for lo, hi, seen in ranges:
            a, b = max(lo, start), min(hi, end)
            if a >= b:
                kept.append([lo, hi, seen])
                continue
            filled += b - a
            if lo < a:
                kept.append([lo, a, seen])
            if b < hi:
                kept.append([b, hi, seen])
        if filled:
            self.gaps[category] -= filled
            self.recovered += filled
        if kept:
            self._missing[key] = kept
        else:
            del self._missing[key]


class Acks:
    """Checkpoints committed and not yet acknowledged: ``committed`` runs on the writer thread,
    ``take`` on the receive thread (which owns the socket that sends them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[bytes, dict[bytes, int]] = {}

    def committed(self, checkpoints: dict[Key, int]) -> None:
        with self._lock:
            for (publisher, topic), next_seq in checkpoints.items():
                per = self._pending.setdefault(publisher, {})
                t = topic.encode()
                if next_seq > per.get(t, -1):
                    per[t] = next_seq

    def take(self) -> dict[bytes, dict[bytes, int]]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending
