"""The agent/dev report (``ai_stats.report``) as text: ``--format csv`` rows and the table for people.

Pure functions of a report dict; they run on the caller's thread and read nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def csv_rows(r: dict[str, Any]) -> list[Sequence[Any]]:
    """(section, key, value) rows of a report for ``--format csv``."""
    rows: list[Sequence[Any]] = [("window", "since", r["since"]), ("window", "until", r["until"]),
                                 ("window", "source", r["source"])]
    for section in ("calls", "latency_ms", "cost_usd", "tokens"):
        rows += [(section, k, v) for k, v in r[section].items() if not isinstance(v, dict)]
    rows += [("calls_by_kind", k, v["calls"]) for k, v in r["calls"]["by_kind"].items()]
    for section in ("by_model", "by_agent"):
        rows += [(section, f"{n}:{k}", v) for n, d in r[section].items() for k, v in d.items()]
    if r["top_agent"]:
        rows.append(("top_agent", r["top_agent"]["agent"], r["top_agent"]["calls"]))
    rows += [("failed_by_error_type", k, v) for k, v in r["failed_calls"]["by_error_type"].items()]
    rows += [("alert_firing", a["rule"], a["last_value"]) for a in r["alerts"]["firing"]]
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[_fmt(v) for v in row] for row in rows]
    sizes = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    return ["  ".join(c.ljust(s) for c, s in zip(r, sizes, strict=True)).rstrip()
            for r in [list(headers), *cells]]


def table_lines(r: dict[str, Any]) -> list[str]:
    """A report as text for people (the M1 report's layout plus breakdowns)."""
    c, lat, cost = r["calls"], r["latency_ms"], r["cost_usd"]
    label = f"last {r['period']}" if r["period"] else "window"
    flt = ", ".join(f"{k}={v}" for k, v in r["filters"].items() if v is not None)
    how = "exact" if lat["exact"] else f"±{lat['max_relative_error']:.0%}"
    rate = "-" if c["success_rate"] is None else f"{c['success_rate']:.1%}"
    top = r["top_agent"]
    out = [f"Development metrics ({label}: {r['since']} .. {r['until']}){' ' + flt if flt else ''}",
           "=" * 60,
           f"Success rate   {rate}  ({c['succeeded']} of {c['total']} calls)",
           f"Latency ms     p50 {_fmt(lat['p50'])}  p95 {_fmt(lat['p95'])}  p99 {_fmt(lat['p99'])}"
           f"  max {_fmt(lat['max'])}  ({how}, from {r['source']})",
           f"Total cost     ${cost['total']:.4f}" + (f"  ({cost['unpriced_model_calls']} model calls without a "
                                                    "price)" if cost["unpriced_model_calls"] else ""),
           "Tokens         " + "  ".join(f"{k} {v}" for k, v in r["tokens"].items()),
           f"Top agent      {top['agent']} ({top['calls']} calls)" if top else "Top agent      -",
           f"Failed calls   {r['failed_calls']['total']}"]
    for title, section in (("model", "by_model"), ("agent", "by_agent")):
        if r[section]:
            out += ["", *_table((title, "calls", "failed", "cost_usd", "tokens", "p95_ms"),
                                [(n, v["calls"], v["failed"], v["cost_usd"], v["total_tokens"], v["p95_ms"])
                                 for n, v in r[section].items()])]
    if r["failed_calls"]["by_error_type"]:
        out += ["", *_table(("error_type", "failed"), list(r["failed_calls"]["by_error_type"].items()))]
    al = r["alerts"]
    out += ["", f"Alerts firing: {len(al['firing'])}" + ("" if al["state_file"] else " (no alert state file)")]
    out += [f"  - [{a['severity']}] {a['rule']}: {a['message']}" for a in al["firing"]]
    for name in ("hourly", "daily"):
        items = r["rollups"][name]
        if items:
            out += ["", f"{name} rollups", *_table(
                ("bucket_start", "category", "component", "service", "count", "errors", "p95_ms"),
                [(i["bucket_start"], i["category"], i["component"], i["service"], i["count"], i["errors"],
                  i["p95_ms"]) for i in items])]
    return out
