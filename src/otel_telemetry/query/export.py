"""Streaming reads of ``records`` for ``export`` and ``watch``, and the export file formats.

Reads are keyset-paginated on the row id (``WHERE id > ? ORDER BY id LIMIT ?``) over read-only
connections, one short read transaction per chunk, so memory stays bounded at any table size and
a running collector's checkpoints are never held up by a long reader.

``otlp-json`` turns stored rows back into OTLP export requests (one JSON object per line, as the
OpenTelemetry Collector's file exporter writes): spans and ``record_telemetry`` events into
ExportTraceServiceRequest, metric points into ExportMetricsServiceRequest, log records into
ExportLogsServiceRequest, each with its resource and scope from ``metadata``. The collector's
OTLP receivers (and other OTel tools) re-ingest them; see docs/cli.md for what a round trip keeps.
"""

from __future__ import annotations

import base64
import csv
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import apsw
import orjson
from google.protobuf import json_format

from .. import categories as cats
from ..otlp import encode as otlp_encode
from ..store.schema import component_of
from .filters import OUTPUT_COLUMNS, RECORD_COLUMNS, iso_ns

FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "otlp-json")
# Columns a selection may constrain (identifier allow-list: names never come from input).
FILTER_COLUMNS: tuple[str, ...] = ("category", "component", "event", "level", "type", "trace_id",
                                   "session_id", "service", "instance")
CHUNK_ROWS = 1000
# A record the OTLP/HTTP receiver would refuse as too large is split into smaller requests.
MAX_OTLP_LINE_BYTES = 4 * 1024 * 1024
SELECT_COLUMNS = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
_KINDS = ("internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")
# Lowest OTLP severity number of each level (schema.severity_level maps them back to the level).
SEVERITY_OF_LEVEL = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
_SIGNAL = {"span": "span", "event": "span", "metric": "metric", "log": "log"}


@dataclass(frozen=True)
class Selection:
    """Which rows: exact matches per column (several values = any of them) and a time window."""

    equal: Mapping[str, Sequence[str]] = field(default_factory=dict)
    since_ns: int | None = None
    until_ns: int | None = None

    def clauses(self) -> tuple[str, list[Any]]:
        """`` AND ...`` conditions (possibly empty) and their bound values."""
        sql: list[str] = []
        params: list[Any] = []
        for column, values in self.equal.items():
            if column not in FILTER_COLUMNS:
                raise ValueError(f"cannot filter on {column!r}")
            if not values:
                continue
            sql.append(f'"{column}" IN ({", ".join("?" * len(values))})')
            params.extend(values)
        if self.since_ns is not None:
            sql.append("timestamp >= ?")
            params.append(self.since_ns)
        if self.until_ns is not None:
            sql.append("timestamp < ?")
            params.append(self.until_ns)
        return "".join(f" AND {c}" for c in sql), params


def bounds(conn: apsw.Connection, sel: Selection) -> tuple[int, int, int]:
    """(matching rows, lowest id, highest id) now; ids are 0 when nothing matches."""
    where, params = sel.clauses()
    row = conn.execute(f"SELECT count(*), min(id), max(id) FROM records WHERE 1{where}", params).fetchone()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def max_id(conn: apsw.Connection) -> int:
    return int(conn.execute("SELECT max(id) FROM records").fetchone()[0] or 0)


def fetch(conn: apsw.Connection, sel: Selection, after: int, upto: int, limit: int) -> list[tuple[Any, ...]]:
    """At most ``limit`` matching rows with ``after < id <= upto``, in id order.

    ``NOT INDEXED`` keeps SQLite on the rowid range: consecutive chunks then scan the table once in
    total, where an index on a filter column would re-sort the remaining selection for every chunk.
    """
    where, params = sel.clauses()
    sql = (f"SELECT {SELECT_COLUMNS} FROM records NOT INDEXED WHERE id > ? AND id <= ?{where} "
           f"ORDER BY id LIMIT ?")
    return list(conn.execute(sql, (after, upto, *params, limit)))


def latest(conn: apsw.Connection, sel: Selection, upto: int, n: int) -> list[tuple[Any, ...]]:
    """The ``n`` newest matching rows with ``id <= upto``, oldest first."""
    where, params = sel.clauses()
    sql = (f"SELECT * FROM (SELECT {SELECT_COLUMNS} FROM records NOT INDEXED WHERE id <= ?{where} "
           "ORDER BY id DESC LIMIT ?) ORDER BY id")
    return list(conn.execute(sql, (upto, *params, n)))


def chunks(conn: apsw.Connection, sel: Selection, first: int, last: int,
           size: int = CHUNK_ROWS) -> Iterator[list[tuple[Any, ...]]]:
    """Matching rows with ids in ``[first, last]`` in chunks of ``size``, each its own read."""
    after = first - 1
    while after < last:
        rows = fetch(conn, sel, after, last, size)
        if not rows:
            return
        yield rows
        after = rows[-1][0]
        if len(rows) < size:
            return


def record(row: Sequence[Any]) -> dict[str, Any]:
    """A row as the dict ``query --format json`` prints (``OUTPUT_COLUMNS``, JSON columns parsed)."""
    rec = dict(zip(RECORD_COLUMNS, row, strict=True))
    for key in ("data", "metadata"):
        if rec[key] is not None:
            try:
                rec[key] = orjson.loads(rec[key])
            except orjson.JSONDecodeError:
                pass  # keep the raw text rather than lose the record
    rec["time"] = iso_ns(rec["timestamp"])
    return {c: rec[c] for c in OUTPUT_COLUMNS}


# --- writers ---------------------------------------------------------------------------------------


class Writer(ABC):
    """Writes chunks of rows to a binary stream; ``write`` returns how many rows were left out.
    ``begin``/``end`` write a format's framing; most formats have none."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def begin(self) -> None:
        return None

    @abstractmethod
    def write(self, rows: Sequence[Sequence[Any]]) -> int: ...

    def end(self) -> None:
        return None


class JsonLinesWriter(Writer):
    def write(self, rows: Sequence[Sequence[Any]]) -> int:
        self.out.write(b"".join(orjson.dumps(record(r), option=orjson.OPT_APPEND_NEWLINE) for r in rows))
        return 0


class JsonArrayWriter(Writer):
    """One JSON array, streamed: ``[`` first, a record per line, ``]`` at the end."""

    _first = True

    def begin(self) -> None:
        self.out.write(b"[")

    def write(self, rows: Sequence[Sequence[Any]]) -> int:
        parts = []
        for r in rows:
            parts.append(b"\n" if self._first else b",\n")
            parts.append(orjson.dumps(record(r)))
            self._first = False
        self.out.write(b"".join(parts))
        return 0

    def end(self) -> None:
        self.out.write(b"]\n" if self._first else b"\n]\n")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class CsvWriter(Writer):
    """Header row of ``OUTPUT_COLUMNS``; ``data`` and ``metadata`` as JSON text; NULL as empty."""

    def _emit(self, rows: Sequence[Sequence[Any]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        self.out.write(buf.getvalue().encode())

    def begin(self) -> None:
        self._emit([OUTPUT_COLUMNS])

    def write(self, rows: Sequence[Sequence[Any]]) -> int:
        self._emit([[_csv_cell(v) for v in record(r).values()] for r in rows])
        return 0


class OtlpJsonWriter(Writer):
    """One OTLP/JSON export request per line and signal, per chunk of rows."""

    def write(self, rows: Sequence[Sequence[Any]]) -> int:
        by_kind: dict[str, list[tuple[dict[str, Any], list[Any]]]] = {"span": [], "metric": [], "log": []}
        bad = 0
        for row in rows:
            rec = record(row)
            kind = _SIGNAL.get(rec["type"])
            try:
                if kind is None:
                    raise ValueError(f"unknown record type {rec['type']!r}")
                by_kind[kind].append(to_wire(rec))
            except (ValueError, TypeError, KeyError, AttributeError):
                bad += 1
        for kind, batches in by_kind.items():
            if batches:
                bad += self._requests(kind, batches)
        return bad

    def _requests(self, kind: str, batches: list[tuple[dict[str, Any], list[Any]]]) -> int:
        req, _good, bad = otlp_encode.build_request(kind, batches)
        line = otlp_json(req)
        if len(line) > MAX_OTLP_LINE_BYTES and len(batches) > 1:
            half = len(batches) // 2
            return self._requests(kind, batches[:half]) + self._requests(kind, batches[half:])
        if _good:
            self.out.write(line)
        return bad


WRITERS: dict[str, type[Writer]] = {"json": JsonArrayWriter, "jsonl": JsonLinesWriter, "csv": CsvWriter,
                                    "otlp-json": OtlpJsonWriter}


# --- stored record → OTLP ------------------------------------------------------------------------

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        if key in obj:
            obj[key] = base64.b64decode(obj[key]).hex()


def otlp_json(req: Any) -> bytes:
    """One line of OTLP/JSON: lowerCamelCase keys, enums as integers, trace/span ids as hex."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    for rkey, skey, ikey in (("resourceSpans", "scopeSpans", "spans"),
                             ("resourceLogs", "scopeLogs", "logRecords")):
        for rx in doc.get(rkey, ()):
            for sx in rx.get(skey, ()):
                for item in sx.get(ikey, ()):
                    _hex_ids(item)
                    for link in item.get("links", ()):
                        _hex_ids(link)
    return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _hint(attrs: dict[str, Any], rec: Mapping[str, Any], derived: str, scope: str | None) -> None:
    """Add ``telemetry.category``/``telemetry.component`` only where re-ingest would differ."""
    if derived != rec["category"] and rec["category"] in cats.CATEGORY_SET:
        attrs["telemetry.category"] = rec["category"]
        if rec["subcategory"]:
            attrs.setdefault("telemetry.subcategory", rec["subcategory"])
    if rec["component"] and component_of(attrs, scope, rec["service"]) != rec["component"]:
        attrs["telemetry.component"] = rec["component"]


def _event_attrs(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes ``record_telemetry`` gave the span (the row keeps only their meaning)."""
    attrs: dict[str, Any] = {"telemetry.category": rec["category"]}
    if rec["subcategory"]:
        attrs["telemetry.subcategory"] = rec["subcategory"]
    attrs.update({"telemetry.event": rec["event"], "telemetry.level": rec["level"],
                  "telemetry.data": orjson.dumps(rec["data"]).decode()})
    if rec["component"]:
        attrs["telemetry.component"] = rec["component"]
    if rec["session_id"]:
        attrs["session.id"] = rec["session_id"]
    record_meta = _dict(rec["metadata"]).get("record")
    if record_meta is not None:
        attrs["telemetry.metadata"] = orjson.dumps(record_meta).decode()
    return attrs


def _span(rec: Mapping[str, Any], data: dict[str, Any], scope: str | None, version: str | None) -> tuple[Any, ...]:
    kind = _KINDS.index(rec["kind"]) if rec["kind"] in _KINDS else 0
    code = _STATUS.index(rec["status"]) if rec["status"] in _STATUS else 0
    events = [(e.get("name"), e.get("timestamp"), _dict(e.get("attributes")))
              for e in data.get("events") or () if isinstance(e, dict)]
    links = [(lk.get("trace_id"), lk.get("span_id"), _dict(lk.get("attributes")))
             for lk in data.get("links") or () if isinstance(lk, dict)]
    if rec["type"] == "event":
        attrs = _event_attrs(rec)
    else:
        attrs = dict(_dict(data.get("attributes")))
        has_exc = any(e[0] == "exception" for e in events)
        _hint(attrs, rec, cats.categorise_span(rec["name"] or "", kind, code, attrs, has_exc)[0], scope)
    start = rec["timestamp"]
    # duration_ms = (end - start) / 1e6 exactly as stored; rounding recovers the integer end.
    end = start + round(rec["duration_ms"] * 1e6) if rec["duration_ms"] is not None else 0
    return (rec["name"] or "", rec["trace_id"], rec["span_id"], rec["parent_span_id"], start, end, kind,
            code, rec["status_message"], attrs, events, links, scope, version)


def _metric(rec: Mapping[str, Any], data: dict[str, Any], scope: str | None, version: str | None) -> tuple[Any, ...]:
    attrs = dict(_dict(data.get("attributes")))
    extra = {k: v for k, v in data.items() if k not in ("attributes", "description")}
    _hint(attrs, rec, cats.categorise_metric(rec["name"] or "", attrs)[0], scope)
    # The point's start time is not stored; 0 means "unknown" in OTLP.
    return (rec["name"], data.get("description") or "", rec["metric_unit"] or "", rec["metric_type"],
            rec["timestamp"], 0, rec["metric_value"], attrs, extra, scope, version)


def _log(rec: Mapping[str, Any], data: dict[str, Any], scope: str | None, version: str | None) -> tuple[Any, ...]:
    attrs = dict(_dict(data.get("attributes")))
    severity = SEVERITY_OF_LEVEL.get(rec["level"], 0)
    _hint(attrs, rec, cats.categorise_log(severity, attrs, rec["name"] or "")[0], scope)
    ts = rec["timestamp"]
    return (ts, ts, severity, data.get("severity_text"), data.get("body"), attrs, rec["trace_id"],
            rec["span_id"], rec["name"], scope, version)


def to_wire(rec: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """(resource attributes, [wire record]) for ``otlp_encode.build_request``, from a stored record."""
    meta = _dict(rec["metadata"])
    scope_meta = _dict(meta.get("scope"))
    scope, version = scope_meta.get("name"), scope_meta.get("version")
    # An event row's data is the event's own payload; _event_attrs rebuilds its attributes.
    data = {} if rec["type"] == "event" else _dict(rec["data"])
    build = {"span": _span, "event": _span, "metric": _metric, "log": _log}[rec["type"]]
    return dict(_dict(meta.get("resource"))), [build(rec, data, scope, version)]
