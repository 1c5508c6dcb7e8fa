"""The daily summary (003 "Evening Broadcast: publish daily telemetry summary"): the last 24 hours'
GenAI calls, errors, cost, top failures and alerts, sent once a day at ``daily_summary.at`` (UTC).

``due`` and ``build`` run on the alert engine's thread with its connections; ``build`` only reads.
"""

from __future__ import annotations

from typing import Any

import apsw

from ...query import ai_stats
from ...query.filters import iso_ns

DAY_NS = 86_400 * 1_000_000_000
_MIN_NS = 60 * 1_000_000_000
TOP_FAILURES = 5


def due(at_minutes: int, now_ns: int) -> str | None:
    """The UTC date (YYYY-MM-DD) whose summary is due at ``now_ns``, or None before ``at`` today."""
    day_start = now_ns // DAY_NS * DAY_NS
    if now_ns < day_start + at_minutes * _MIN_NS:
        return None
    return iso_ns(day_start)[:10]


def build(reader: apsw.Connection, state: apsw.Connection, now_ns: int) -> dict[str, Any]:
    """The figures of the 24 hours before ``now_ns``: calls (total, failed, success rate), errors
    (error/critical records), cost, top failures (error records by message) and alerts fired."""
    since = now_ns - DAY_NS
    report = ai_stats.report(reader, since, now_ns, include_rollups=False)
    errors = reader.execute(
        "SELECT count(*) FROM records WHERE timestamp >= ? AND timestamp < ? AND level IN ('error', 'critical')",
        (since, now_ns)).fetchone()[0]
    top = [{"failure": f, "count": n} for f, n in reader.execute(
        "SELECT coalesce(status_message, event, name, type) AS f, count(*) AS n FROM records "
        "WHERE timestamp >= ? AND timestamp < ? AND level IN ('error', 'critical') "
        "GROUP BY f ORDER BY n DESC, f LIMIT ?", (since, now_ns, TOP_FAILURES))]
    fired = [{"rule": r, "severity": sev, "state": st, "fired": iso_ns(f)} for r, sev, st, f in state.execute(
        "SELECT rule, severity, state, fired FROM alert_history WHERE fired >= ? AND fired < ? ORDER BY fired",
        (since, now_ns))]
    calls = report["calls"]
    return {"since": iso_ns(since), "until": iso_ns(now_ns),
            "calls": {"total": calls["total"], "failed": calls["failed"], "success_rate": calls["success_rate"]},
            "errors": errors, "cost_usd": report["cost_usd"]["total"], "top_failures": top, "alerts": fired}


def text(s: dict[str, Any]) -> str:
    """One line per figure, for chat and e-mail channels."""
    rate = s["calls"]["success_rate"]
    lines = [f"Telemetry summary {s['since']} .. {s['until']}",
             f"AI calls: {s['calls']['total']} ({s['calls']['failed']} failed"
             + (f", success rate {rate:.1%})" if rate is not None else ")"),
             f"Errors: {s['errors']}", f"Cost: ${s['cost_usd'] or 0:.2f}"]
    if s["top_failures"]:
        lines.append("Top failures: " + "; ".join(f"{t['failure']} ({t['count']})" for t in s["top_failures"]))
    lines.append("Alerts: " + ("; ".join(f"{a['rule']} [{a['severity']}, {a['state']}]" for a in s["alerts"])
                               or "none"))
    return "\n".join(lines)
