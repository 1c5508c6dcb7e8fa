"""What failing or slow spans share: attribute values over-represented in a selection of spans
against the rest of the window (``otel-telemetry compare``, the dashboard's Compare page).

The selection is ``error`` (status ERROR), ``duration>500ms`` (also ``>=``, ``<``, ``<=``; ms, s
or a bare number of ms) or any attribute filter of ``attr_search`` (``region=eu-west``); the rest
is every other span of the same population (window, optional operation name, service and
attribute filters). For each ``key=value`` of the spans' attributes, resource attributes and the
``service``/``name``/``status`` columns: how many spans of each side carry it, and the share. Sorted by the
difference of the shares (selection % − rest %), then by the selection count.

Cost is bounded (``max_spans``, setting ``compare_max_spans``): a window of up to ``5 * max_spans``
rows is counted exactly, and a side above ``max_spans / 2`` spans has its pairs counted on a
deterministic sample of that size (rows picked by a permutation of their id). A larger window is
never scanned (only counted in the timestamp index): ``2 * max_spans`` row ids are read in evenly
spread runs of consecutive ids (rowid ranges), and the span counts are estimated from what they
hold (``estimated``). The same window
gives the same answer, and the result says when it sampled (``sampled``).

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

DEFAULT_MAX_SPANS = 10_000  # 5 000 spans a side: a 10 % share within ±0.9 % (95 %)
MAX_VALUE_CHARS = 120  # longer values are mostly ids, texts and payloads: not a shared trait
_PRIME = 1_000_003  # id -> (id mod p) * g mod p is a permutation of 0..p-1 for a generator-like g
_MULT = 7919
_EXACT_FACTOR = 5  # a window of up to 5 * max_spans rows is scanned; a larger one is read in runs of ids
_BUDGET_FACTOR = 2  # ... 2 * max_spans row ids of it
_RUN_IDS = 250  # consecutive ids per run at most: one short rowid range read each
_MIN_RUNS = 40  # runs at least, spread over the window
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


def _attr_pairs(source: str, attrs: Any, out: list[tuple[str, str, str]]) -> None:
    """Append (source, key, value) for each scalar attribute (no lists/objects, no long values)."""
    if attrs.__class__ is not dict:
        return
    for key, value in attrs.items():
        cls = value.__class__
        if cls is str:
            if len(value) > MAX_VALUE_CHARS:
                continue
        elif cls is bool:
            value = "true" if value else "false"
        elif cls is int:
            value = str(value)
        elif cls is float:
            if not math.isfinite(value):
                continue
            value = str(value)
        else:
            continue  # lists and objects: no single value to share
        out.append((source, key, value))


class _Pairs:
    """(source, key, value) of one span: attributes, resource attributes, service, name, status.

    A side reads thousands of spans of a few resources: each resource's pairs are made once."""

    def __init__(self) -> None:
        self._resources: dict[str, list[tuple[str, str, str]]] = {}

    def resource(self, meta: Any) -> list[tuple[str, str, str]]:
        pairs = self._resources.get(meta)
        if pairs is None:
            pairs = []
            try:
                obj = orjson.loads(meta) if meta else None
            except orjson.JSONDecodeError:
                obj = None
            if obj.__class__ is dict:
                _attr_pairs("resource", obj.get("resource"), pairs)
            # service.name is the service column, counted as such
            pairs = [p for p in pairs if p[1] != "service.name"]
            if len(self._resources) < 10_000:
                self._resources[meta] = pairs
        return pairs

    def of(self, data: Any, meta: Any, service: Any, name: Any, status: Any) -> list[tuple[str, str, str]]:
        out = list(self.resource(meta))
        if service is not None:
            out.append(("column", "service", str(service)))
        if name is not None:
            out.append(("column", "name", str(name)))
        if status is not None:
            out.append(("column", "status", str(status)))
        try:
            obj = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return out
        if obj.__class__ is dict:
            _attr_pairs("span", obj.get("attributes"), out)
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
    pairs = _Pairs()
    n = 0
    for data, meta, service, name, status in conn.execute(sql, (*params, *wparams, *sparams, cap)):
        counts.update(pairs.of(data, meta, service, name, status))
        n += 1
    return counts, n


def _window_rows(conn: apsw.Connection, since_ns: int, until_ns: int) -> tuple[int, int, int]:
    """(records in the window, lowest id, highest id): read from the timestamp index alone (no
    table row), whatever order the rows arrived in (late or re-imported rows included)."""
    n, lo, hi = conn.execute("SELECT count(*), min(id), max(id) FROM records WHERE timestamp >= ? AND timestamp < ?",
                             (since_ns, until_ns)).fetchone()
    return int(n or 0), int(lo or 0), int(hi or -1)


def _exact(conn: apsw.Connection, where: Where, pop: str, params: list[Any], since_ns: int, until_ns: int,
           half: int) -> tuple[Counter[Any], int, Counter[Any], int, dict[str, Any]]:
    """A window of few rows: every span counted; a side above ``half`` spans read as a sample."""
    base = f"timestamp >= ? AND timestamp < ? AND {pop}"
    bparams = [since_ns, until_ns, *params]
    sel_where = f"coalesce(({where.sql}), 0)"
    row = conn.execute(f"SELECT count(*), sum({sel_where}) FROM records WHERE {base}",
                       (*where.params, *bparams)).fetchone()
    total, selected = int(row[0] or 0), int(row[1] or 0)
    sel_counts, sel_n = _side(conn, base, bparams, sel_where, where.params, selected, half)
    rest_counts, rest_n = _side(conn, base, bparams, f"NOT {sel_where}", where.params, total - selected, half)
    return sel_counts, sel_n, rest_counts, rest_n, {"selection": selected, "rest": total - selected,
                                                    "estimated": False}


def _chunked(conn: apsw.Connection, where: Where, pop: str, params: list[Any], since_ns: int, until_ns: int,
             window: tuple[int, int, int], half: int,
             budget: int) -> tuple[Counter[Any], int, Counter[Any], int, dict[str, Any]]:
    """A large window: ``budget`` row ids read in evenly spread runs of consecutive ids (cheap rowid
    ranges, no scan of the window), each side's pairs counted on up to ``half`` of its spans, and
    the window's span counts estimated from the shares seen."""
    window_rows, lo, hi = window
    run_ids = max(1, min(_RUN_IDS, budget // _MIN_RUNS))
    runs = max(1, budget // run_ids)
    stride = (hi - lo + 1) / runs
    sql = (f"SELECT timestamp, ({pop}), coalesce(({where.sql}), 0), data, metadata, service, name, status "
           "FROM records WHERE id >= ? AND id < ?")
    counts: tuple[Counter[Any], Counter[Any]] = (Counter(), Counter())
    read, matched = [0, 0], [0, 0]
    in_window = probed = 0
    pairs = _Pairs()
    for k in range(runs):
        first = lo + int(k * stride)
        last = min(first + run_ids, hi + 1)
        probed += last - first
        for ts, member, chosen, data, meta, service, name, status in conn.execute(
                sql, (*params, *where.params, first, last)):
            if not since_ns <= ts < until_ns:
                continue
            in_window += 1
            if not member:
                continue
            side = 0 if chosen else 1
            matched[side] += 1
            if read[side] < half:
                read[side] += 1
                counts[side].update(pairs.of(data, meta, service, name, status))
    scale = window_rows / in_window if in_window else 0.0  # the window's rows are counted exactly
    return counts[0], read[0], counts[1], read[1], {
        "selection": round(matched[0] * scale), "rest": round(matched[1] * scale), "estimated": True,
        "rows_read": probed, "rows_in_window": window_rows}


def compare(conn: apsw.Connection, where: Where, since_ns: int, until_ns: int, *, name: str | None = None,
            service: str | None = None, attrs: Sequence[attr_search.AttrFilter] = (), limit: int = 20,
            max_spans: int = DEFAULT_MAX_SPANS, instance: str | None = None) -> dict[str, Any]:
    """Attribute values over-represented in the spans matching ``where`` against the other spans of
    ``[since_ns, until_ns)`` (same ``name``, ``service``, ``attrs`` and collector ``instance``); at
    most ``limit`` rows.

    A window of up to ``5 * max_spans`` records (counted in the timestamp index) is counted
    exactly (each side's pairs on a sample of ``max_spans / 2`` spans if larger); a larger one is
    read in spread runs of ids (``2 * max_spans`` rows) and its span counts are estimates
    (``estimated``)."""
    if not 1 <= limit <= 1000:
        raise QueryError(f"limit {limit!r} is not from 1 to 1000")
    pop = "type = 'span'"
    params: list[Any] = []
    for column, value in (("name", name), ("service", service), ("instance", instance)):
        if value is not None:
            pop += f' AND "{column}" = ?'  # column names are these three constants
            params.append(value)
    extra, extra_params = attr_search.clauses(tuple(attrs))
    pop += extra
    params += extra_params
    half = max_spans // 2
    window_rows, lo, hi = _window_rows(conn, since_ns, until_ns)
    if window_rows <= _EXACT_FACTOR * max_spans:
        sel_counts, sel_n, rest_counts, rest_n, spans = _exact(conn, where, pop, params, since_ns, until_ns, half)
    else:
        sel_counts, sel_n, rest_counts, rest_n, spans = _chunked(conn, where, pop, params, since_ns, until_ns,
                                                                 (window_rows, lo, hi), half,
                                                                 _BUDGET_FACTOR * max_spans)
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
    out = {
        "where": where.text, "name": name, "service": service, "instance": instance,
        "attrs": [str(a) for a in attrs],
        "since": iso_ns(since_ns), "until": iso_ns(until_ns), "since_ns": since_ns, "until_ns": until_ns,
        "selection": {"spans": spans["selection"], "read": sel_n}, "rest": {"spans": spans["rest"], "read": rest_n},
        "sampled": spans["estimated"] or sel_n < spans["selection"] or rest_n < spans["rest"],
        "estimated": spans["estimated"], "max_spans": max_spans, "attributes": rows[:limit],
    }
    if spans["estimated"]:
        out["rows_read"] = spans["rows_read"]
        out["rows_in_window"] = spans["rows_in_window"]
    return out


def table_lines(r: dict[str, Any]) -> list[str]:
    """The header lines of the table output (the table itself is printed by the CLI)."""
    lines = [f"window    {r['since']} .. {r['until']}",
             f"selection {r['where']}: {r['selection']['spans']} spans; rest: {r['rest']['spans']} spans"
             + (f"  (operation {r['name']})" if r["name"] else "")]
    if r["estimated"]:
        lines[1] = lines[1].replace(": ", ": ~", 1).replace("rest: ", "rest: ~")
        lines.append(f"sampled   {r['rows_read']} row ids of a window of {r['rows_in_window']} records "
                     f"read in spread runs; span counts are estimates; pairs counted on {r['selection']['read']} "
                     f"selected and {r['rest']['read']} other spans")
    elif r["sampled"]:
        lines.append(f"sampled   {r['selection']['read']} of the selection and {r['rest']['read']} of the rest "
                     f"(more than {r['max_spans']} spans in the window)")
    return lines


ROW_COLUMNS = ("key", "value", "source", "selection", "selection_pct", "rest", "rest_pct", "score", "ratio")
