"""What failing or slow spans share: attribute values over-represented in a selection of spans
against the rest of the window (``otel-telemetry compare``, the dashboard's Compare page).

The selection is ``error`` (status ERROR), ``duration>500ms`` (also ``>=``, ``<``, ``<=``; ms, s
or a bare number of ms) or any attribute filter of ``attr_search`` (``region=eu-west``); the rest
is every other span of the same population (window, optional operation name, service and
attribute filters). For each ``key=value`` of the spans' attributes, resource attributes and the
``service``/``name``/``status`` columns: how many spans of each side carry it, and the share. Sorted by the
difference of the shares (selection % − rest %), then by the selection count.

Cost is bounded: when a side holds more than ``max_spans / 2`` spans, a deterministic sample of
that size is read (rows picked by a permutation of their id, so the same window gives the same
answer), and the result says so (``sampled``, counts of both the sample and the side).

Runs on the caller's thread over a read-only connection; never writes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import orjson

from .. import settings
from . import attr_search
from .filters import QueryError, iso_ns

DEFAULT_MAX_SPANS = 20_000
MAX_VALUE_CHARS = 120  # longer values are mostly ids, texts and payloads: not a shared trait
_PRIME = 1_000_003  # id -> (id mod p) * g mod p is a permutation of 0..p-1 for a generator-like g
_MULT = 7919
_DURATION_RE = re.compile(r"^\s*duration\s*(>=|<=|>|<)\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Where:
    """The selection: SQL condition and bound values, and its text as the user wrote it."""

    text: str
    sql: str
    params: tuple[Any, ...]
    key: str | None = None  # the attribute the selection is made of: trivially over-represented, not listed


def parse_where(text: str) -> Where:
    """``error``, ``duration>500ms`` (``>=``, ``<``, ``<=``; ``ms``/``s``/none = ms) or an
    attribute filter (``key=value``, ``key!=value``, ``key>n``)."""
    raw = (text or "").strip()
    if raw.lower() in ("error", "errors", "status=error"):
        return Where("error", "status = 'error'", (), "status")
    m = _DURATION_RE.match(raw)
    if m:
        ms = float(m.group(2)) * (1000 if (m.group(3) or "ms").lower() == "s" else 1)
        return Where(raw, f"duration_ms {m.group(1)} ?", (ms,))
    try:
        flt = attr_search.parse(raw)
    except QueryError:
        raise QueryError(f"--where {text!r}: use error, duration>500ms (>=, <, <=; ms or s) or an "
                         "attribute filter key=value / key!=value / key>number") from None
    sql, params = flt.clause()
    return Where(raw, sql, tuple(params), flt.key)


def max_spans_setting(argument: int | None = None) -> int:
    """The sample bound: argument > $OTEL_TELEMETRY_COMPARE_MAX_SPANS > default."""
    n = settings.resolve("compare_max_spans", argument)
    if not isinstance(n, int) or n < 100:
        raise QueryError(f"compare max spans {n!r} must be an integer of at least 100")
    return n


def _pairs(data: Any, meta: Any, service: Any, name: Any, status: Any) -> set[tuple[str, str, str]]:
    """(source, key, value) of one span: scalar attributes and resource attributes, service, name, status."""
    out: set[tuple[str, str, str]] = set()
    if status is not None:
        out.add(("column", "status", str(status)))
    if service is not None:
        out.add(("column", "service", str(service)))
    if name is not None:
        out.add(("column", "name", str(name)))
    for source, text, field in (("span", data, "attributes"), ("resource", meta, "resource")):
        try:
            obj = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            continue
        attrs = obj.get(field) if isinstance(obj, dict) else None
        if not isinstance(attrs, dict):
            continue
        for key, value in attrs.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, float) and not math.isfinite(value):
                continue
            elif not isinstance(value, str | int | float):
                continue  # lists and objects: no single value to share
            text_value = str(value)
            if len(text_value) <= MAX_VALUE_CHARS and key != "service.name":  # service.name is `service`
                out.add((source, key, text_value))
    return out


def _side(conn: apsw.Connection, base: str, params: list[Any], where: str, wparams: Sequence[Any],
          total: int, cap: int) -> tuple[Counter[tuple[str, str, str]], int]:
    """Pair counts over the side's spans (all, or a deterministic sample of about ``cap``)."""
    sample = ""
    sparams: list[Any] = []
    if total > cap:
        # Rows whose permuted id falls below the threshold: a spread-out, repeatable sample.
        sample = " AND ((id % ?) * ? % ?) < ?"
        sparams = [_PRIME, _MULT, _PRIME, max(1, int(_PRIME * cap / total))]
    sql = f"SELECT data, metadata, service, name, status FROM records WHERE {base} AND {where}{sample} LIMIT ?"
    counts: Counter[tuple[str, str, str]] = Counter()
    n = 0
    for data, meta, service, name, status in conn.execute(sql, (*params, *wparams, *sparams, cap)):
        counts.update(_pairs(data, meta, service, name, status))
        n += 1
    return counts, n


def compare(conn: apsw.Connection, where: Where, since_ns: int, until_ns: int, *, name: str | None = None,
            service: str | None = None, attrs: Sequence[attr_search.AttrFilter] = (), limit: int = 20,
            max_spans: int = DEFAULT_MAX_SPANS) -> dict[str, Any]:
    """Attribute values over-represented in the spans matching ``where`` against the other spans of
    ``[since_ns, until_ns)`` (same ``name``, ``service`` and ``attrs``); at most ``limit`` rows."""
    if not 1 <= limit <= 1000:
        raise QueryError(f"limit {limit!r} is not from 1 to 1000")
    base = "type = 'span' AND timestamp >= ? AND timestamp < ?"
    params: list[Any] = [since_ns, until_ns]
    for column, value in (("name", name), ("service", service)):
        if value is not None:
            base += f' AND "{column}" = ?'  # column names are these two constants
            params.append(value)
    extra, extra_params = attr_search.clauses(tuple(attrs))
    base += extra
    params += extra_params
    sel_where = f"coalesce(({where.sql}), 0)"
    rest_where = f"NOT coalesce(({where.sql}), 0)"
    row = conn.execute(f"SELECT count(*), sum({sel_where}) FROM records WHERE {base}",
                       (*where.params, *params)).fetchone()
    total, selected = int(row[0] or 0), int(row[1] or 0)
    rest = total - selected
    half = max_spans // 2
    sel_counts, sel_n = _side(conn, base, params, sel_where, where.params, selected, half)
    rest_counts, rest_n = _side(conn, base, params, rest_where, where.params, rest, half)
    rows = []
    for pair, k in sel_counts.items():
        sel_share = k / sel_n
        r = rest_counts.get(pair, 0)
        rest_share = r / rest_n if rest_n else 0.0
        if sel_share <= rest_share or (k < 2 and sel_n > 1):
            continue  # not over-represented, or one span's own value
        source, key, value = pair
        if key == where.key:
            continue
        rows.append({"key": key, "value": value, "source": source, "selection": k,
                     "selection_pct": round(100 * sel_share, 2), "rest": r,
                     "rest_pct": round(100 * rest_share, 2), "score": round(sel_share - rest_share, 4),
                     "ratio": round(sel_share / rest_share, 2) if rest_share else None})
    rows.sort(key=lambda x: (-x["score"], -x["selection"], x["key"], x["value"]))
    return {
        "where": where.text, "name": name, "service": service, "attrs": [str(a) for a in attrs],
        "since": iso_ns(since_ns), "until": iso_ns(until_ns), "since_ns": since_ns, "until_ns": until_ns,
        "selection": {"spans": selected, "read": sel_n}, "rest": {"spans": rest, "read": rest_n},
        "sampled": sel_n < selected or rest_n < rest, "max_spans": max_spans,
        "attributes": rows[:limit],
    }


def table_lines(r: dict[str, Any]) -> list[str]:
    """The header lines of the table output (the table itself is printed by the CLI)."""
    lines = [f"window    {r['since']} .. {r['until']}",
             f"selection {r['where']}: {r['selection']['spans']} spans; rest: {r['rest']['spans']} spans"
             + (f"  (operation {r['name']})" if r["name"] else "")]
    if r["sampled"]:
        lines.append(f"sampled   {r['selection']['read']} of the selection and {r['rest']['read']} of the rest "
                     f"(more than {r['max_spans']} spans in the window)")
    return lines


ROW_COLUMNS = ("key", "value", "source", "selection", "selection_pct", "rest", "rest_pct", "score", "ratio")
