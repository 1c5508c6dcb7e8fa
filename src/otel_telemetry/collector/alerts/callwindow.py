"""GenAI calls of the last window, kept up to date incrementally for the alert engine.

The default AI rules (success rate, P95 latency, daily cost over GenAI calls) run in every
collector, so a round must not re-read a day of records every 15 s. The first round reads the
window once (through the timestamp index); every later round reads only the rows inserted since
(``id`` above the last one seen, a primary-key range) and drops the minutes that left the window.
Values are the same as the SQL of ``rules.rule_value`` over ``(now - window, now]``: counts and
cost exact, percentiles nearest-rank over the exact durations (tests compare both).

Used for rules with ``source: calls`` and no ``filter`` (the defaults); rows deleted after they
were read (an emergency ``purge``) still count until their minute leaves the window. Engine thread
only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apsw

from ...query.ai_stats import CALL_SQL

_NS = 1_000_000_000
_MINUTE_NS = 60 * _NS


@dataclass
class _Minute:
    rows: list[tuple[int, bool, float | None, float | None]] = field(default_factory=list)  # ts, failed, ms, $


class CallWindow:
    """The GenAI calls with a timestamp in the last ``span_s`` seconds, by minute."""

    def __init__(self, span_s: float) -> None:
        self.span_ns = int(span_s * _NS)
        self._minutes: dict[int, _Minute] = {}
        self._last_id: int | None = None

    def update(self, conn: apsw.Connection, now_ns: int) -> int:
        """Read what was inserted since the last update (the whole window the first time); returns
        the number of call rows read. Raises apsw.Error like any query."""
        top = conn.execute("SELECT max(id) FROM records").fetchone()[0] or 0
        since = now_ns - self.span_ns
        if self._last_id is None:
            rows = conn.execute(f"SELECT timestamp, level, duration_ms, cost_usd FROM records "
                                f"WHERE timestamp > ? AND id <= ? AND ({CALL_SQL})", (since, top))
        else:
            rows = conn.execute(f"SELECT timestamp, level, duration_ms, cost_usd FROM records "
                                f"WHERE id > ? AND id <= ? AND timestamp > ? AND ({CALL_SQL})",
                                (self._last_id, top, since))
        n = 0
        for ts, level, ms, cost in rows:
            minute = self._minutes.get(ts // _MINUTE_NS)
            if minute is None:
                minute = self._minutes[ts // _MINUTE_NS] = _Minute()
            minute.rows.append((ts, level in ("error", "critical"), ms, cost))
            n += 1
        self._last_id = max(top, self._last_id or 0)
        first = since // _MINUTE_NS
        for m in [m for m in self._minutes if m < first]:
            del self._minutes[m]
        return n

    def _rows(self, since_ns: int, now_ns: int) -> list[tuple[int, bool, float | None, float | None]]:
        out = []
        for m, minute in self._minutes.items():
            if (m + 1) * _MINUTE_NS <= since_ns or m * _MINUTE_NS > now_ns:
                continue
            out += [r for r in minute.rows if since_ns < r[0] <= now_ns]
        return out

    def success_rate(self, since_ns: int, now_ns: int, min_samples: int) -> float | None:
        rows = self._rows(since_ns, now_ns)
        if not rows or len(rows) < min_samples:
            return None
        return sum(1 for r in rows if not r[1]) / len(rows)

    def cost(self, since_ns: int, now_ns: int) -> float:
        return float(sum(r[3] for r in self._rows(since_ns, now_ns) if r[3] is not None))

    def durations(self, since_ns: int, now_ns: int) -> list[float]:
        """Sorted durations (ms) of the calls in ``(since, now]`` that have one."""
        return sorted(float(r[2]) for r in self._rows(since_ns, now_ns) if r[2] is not None)


def serves(rule_source: str, kind: str, fld: str, aggregation: str, has_filter: bool) -> bool:
    """Whether a rule's value can come from a CallWindow (else it is read with SQL)."""
    if rule_source != "calls" or has_filter:
        return False
    if kind in ("success_rate", "cost_budget"):
        return True
    return kind == "threshold" and fld == "duration_ms" and aggregation != "rate"
