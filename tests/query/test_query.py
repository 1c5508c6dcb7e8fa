"""The read side against real SQLite files built from the schema DDL; no mocks."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

from otel_telemetry.query.filters import (
    OUTPUT_COLUMNS,
    Filters,
    QueryError,
    iso_ns,
    nearest_rank,
    parse_duration,
    parse_time,
    query_records,
    stats,
    status,
)
from otel_telemetry.store import schema

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
INJECTIONS = (
    "x' OR '1'='1",
    "'; DROP TABLE records; --",
    '" OR 1=1 --',
    "%",
    "ai_behavior' --",
    "1; DELETE FROM records",
)


def make_row(i: int, **kw: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {c: None for c in schema.COLUMNS}
    values.update(uid=i.to_bytes(16, "big"), timestamp=T0 + i * NS, type="span",
                  category="component_interactions", component="comp", event="ev", level="info",
                  data=orjson.dumps({"n": i}).decode(), metadata="{}")
    values.update(kw)
    return tuple(values[c] for c in schema.COLUMNS)


def create_db(path: Path, rows: list[tuple[Any, ...]]) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute(schema.DDL)
    cols = ", ".join(schema.COLUMNS)
    marks = ", ".join("?" for _ in schema.COLUMNS)
    with conn:
        conn.executemany(f"INSERT INTO records({cols}) VALUES ({marks})", rows)
    return conn


TRACE_A = "a" * 32
TRACE_B = "0123456789abcdef" * 2

BASE_ROWS = [
    make_row(1, type="span", category="ai_behavior", component="llm", event="chat", level="info",
             name="chat", service="svc-a", trace_id=TRACE_A, span_id="1" * 16, session_id="s1",
             duration_ms=120.0, status="ok"),
    make_row(2, type="span", category="error_patterns", component="db", event="query", level="error",
             name="SELECT", service="svc-b", trace_id=TRACE_B, duration_ms=5.0, status="error"),
    make_row(3, type="log", category="component_interactions", component="api", event="log",
             level="warning", service="svc-a", session_id="s2", trace_id=TRACE_A),
    make_row(4, type="metric", category="system_performance", component="host", event="system.cpu",
             level="info", name="system.cpu", metric_type="gauge", metric_value=0.5),
    make_row(5, type="event", category="user_interaction", component="ui", event="click",
             level="critical", session_id="s1", service="svc-a"),
    # A legitimate value that looks like an injection: only it may match that string.
    make_row(6, type="log", category="component_interactions", component=INJECTIONS[0], event="log",
             level="debug"),
]


@pytest.fixture
def conn(tmp_path: Path) -> apsw.Connection:
    return create_db(tmp_path / "t.db", BASE_ROWS)


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in records]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("category", "ai_behavior", [1]),
        ("category", "component_interactions", [6, 3]),
        ("component", "db", [2]),
        ("event", "log", [6, 3]),
        ("level", "info", [4, 1]),
        ("level", "critical", [5]),
        ("type", "span", [2, 1]),
        ("type", "metric", [4]),
        ("trace_id", TRACE_A, [3, 1]),
        ("trace_id", TRACE_B.upper(), [2]),
        ("session_id", "s1", [5, 1]),
        ("service", "svc-a", [5, 3, 1]),
        ("service", "nobody", []),
    ],
)
def test_each_filter(conn: apsw.Connection, field: str, value: str, expected: list[int]) -> None:
    assert ids(query_records(conn, Filters(**{field: value}))) == expected


def test_filters_combine(conn: apsw.Connection) -> None:
    assert ids(query_records(conn, Filters(service="svc-a", session_id="s1", type="event"))) == [5]


def test_record_shape(conn: apsw.Connection) -> None:
    (rec,) = query_records(conn, Filters(component="llm"))
    assert tuple(rec) == OUTPUT_COLUMNS
    assert "uid" not in rec
    assert rec["timestamp"] == T0 + NS and rec["time"] == "2026-01-01T00:00:01.000Z"
    assert rec["data"] == {"n": 1} and rec["metadata"] == {}
    assert rec["duration_ms"] == 120.0 and rec["trace_id"] == TRACE_A


def test_time_window_inclusive_start_exclusive_end(conn: apsw.Connection) -> None:
    assert ids(query_records(conn, Filters(since_ns=T0 + 2 * NS, until_ns=T0 + 4 * NS))) == [3, 2]
    assert ids(query_records(conn, Filters(since_ns=T0 + 5 * NS))) == [6, 5]
    assert ids(query_records(conn, Filters(until_ns=T0 + 2 * NS))) == [1]


def test_limit_and_order(conn: apsw.Connection) -> None:
    assert ids(query_records(conn, Filters(limit=2))) == [6, 5]
    assert ids(query_records(conn, Filters(limit=2, order="asc"))) == [1, 2]
    assert ids(query_records(conn, Filters(order="asc"))) == [1, 2, 3, 4, 5, 6]


def test_equal_timestamps_are_ordered_by_id(tmp_path: Path) -> None:
    c = create_db(tmp_path / "e.db", [make_row(i, timestamp=T0) for i in range(1, 4)])
    assert ids(query_records(c, Filters(order="asc"))) == [1, 2, 3]
    assert ids(query_records(c, Filters())) == [3, 2, 1]


def _master(conn: apsw.Connection) -> list[tuple[Any, ...]]:
    return list(conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name"))


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_in_text_filters(conn: apsw.Connection, text: str) -> None:
    before = _master(conn)
    for field in ("component", "event", "service", "session_id"):
        got = ids(query_records(conn, Filters(**{field: text})))
        assert got == ([6] if (field, text) == ("component", INJECTIONS[0]) else [])
    assert _master(conn) == before
    assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == len(BASE_ROWS)


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_in_validated_filters(conn: apsw.Connection, text: str) -> None:
    before = _master(conn)
    for field in ("category", "level", "type", "trace_id", "order"):
        with pytest.raises(QueryError):
            Filters(**{field: text})
    with pytest.raises(QueryError):
        parse_time(text)
    with pytest.raises(QueryError):
        stats(conn, None, None, category=text)
    assert _master(conn) == before


@pytest.mark.parametrize("limit", [0, -1, 1_000_001, "10", 2.5, True])
def test_bad_limit(limit: Any) -> None:
    with pytest.raises(QueryError, match="limit"):
        Filters(limit=limit)


def test_out_of_range_times_rejected() -> None:
    with pytest.raises(QueryError):
        Filters(since_ns=2**63)
    with pytest.raises(QueryError):
        Filters(until_ns=1.5)  # type: ignore[arg-type]


def test_limit_bounds_accepted() -> None:
    assert Filters(limit=1).limit == 1 and Filters(limit=1_000_000).limit == 1_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1w", 604800), ("1.5h", 5400),
     ("2H", 7200)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "h", "24", "-1h", "0s", "1h30m", "1e3s", "abc",
                                  "99999999999w"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(QueryError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T01:00:00+01:00", T0),
        ("2026-01-01T00:00:00.25", T0 + NS // 4),
        ("2026-01-01", T0),
        ("1767225600", T0),
        ("1767225600.000000001", T0 + 1),
    ],
)
def test_parse_time_absolute(text: str, ns: int) -> None:
    assert parse_time(text) == ns


def test_parse_time_relative() -> None:
    assert parse_time("2h", now_ns=T0) == T0 - 7200 * NS
    assert parse_time("1d", now_ns=T0) == T0 - 86400 * NS


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-01-01T25:00", "3x", "1,5",
                                  "99999999999999999999", "9999-01-01", "0001-01-01"])
def test_bad_time(text: str) -> None:
    with pytest.raises(QueryError):
        parse_time(text)


def test_iso_ns_millisecond_precision() -> None:
    assert iso_ns(T0 + 1_234_567_891) == "2026-01-01T00:00:01.234Z"
    assert iso_ns(None) is None


def _independent_nearest_rank(values: list[float], p: int) -> float:
    # Textbook definition, written separately from the implementation under test.
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_percentiles_exact(tmp_path: Path) -> None:
    durations = list(range(1, 101))
    random.Random(7).shuffle(durations)
    rows = [make_row(i + 1, category="system_performance", duration_ms=float(d))
            for i, d in enumerate(durations)]
    other = [10.0, 30.0, 20.0]
    rows += [make_row(200 + i, category="ai_behavior", duration_ms=d) for i, d in enumerate(other)]
    # Records that must not count towards latency: a log with a duration, a span without one.
    rows.append(make_row(300, type="log", category="ai_behavior", duration_ms=99999.0))
    rows.append(make_row(301, category="ai_behavior", duration_ms=None))
    c = create_db(tmp_path / "p.db", rows)

    s = stats(c, None, None)
    sp = s["latency_ms"]["by_category"]["system_performance"]
    assert (sp["count"], sp["p50"], sp["p95"], sp["p99"], sp["max"]) == (100, 50.0, 95.0, 99.0, 100.0)
    ai = s["latency_ms"]["by_category"]["ai_behavior"]
    assert (ai["count"], ai["p50"], ai["p95"], ai["p99"]) == (3, 20.0, 30.0, 30.0)
    everything = [float(d) for d in durations] + other
    overall = s["latency_ms"]["overall"]
    assert overall["count"] == 103
    for p in (50, 95, 99):
        assert overall[f"p{p}"] == _independent_nearest_rank(everything, p)

    only_ai = stats(c, None, None, category="ai_behavior")
    assert only_ai["latency_ms"]["overall"]["p50"] == 20.0
    assert list(only_ai["latency_ms"]["by_category"]) == ["ai_behavior"]


def test_nearest_rank_edges() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7.0], 1) == 7.0 and nearest_rank([7.0], 100) == 7.0
    assert nearest_rank([1.0, 2.0], 50) == 1.0 and nearest_rank([1.0, 2.0], 51) == 2.0
    with pytest.raises(QueryError):
        nearest_rank([1.0], 0)


def test_stats_counts_and_window(conn: apsw.Connection) -> None:
    s = stats(conn, None, None)
    assert s["total"] == 6
    assert s["by_category"] == {"ai_behavior": 1, "component_interactions": 2, "error_patterns": 1,
                                "system_performance": 1, "user_interaction": 1}
    assert s["by_level"] == {"critical": 1, "debug": 1, "error": 1, "info": 2, "warning": 1}
    assert s["by_type"] == {"event": 1, "log": 2, "metric": 1, "span": 2}
    assert s["errors"] == 2
    assert s["latency_ms"]["overall"] == {"count": 2, "p50": 5.0, "p95": 120.0, "p99": 120.0,
                                          "max": 120.0}

    w = stats(conn, T0 + 2 * NS, T0 + 5 * NS)
    assert (w["total"], w["errors"], w["by_type"]) == (3, 1, {"log": 1, "metric": 1, "span": 1})
    assert w["since"] == "2026-01-01T00:00:02.000Z"

    e = stats(conn, T0 + 100 * NS, None)
    assert e["total"] == 0 and e["latency_ms"]["overall"]["p50"] is None


def test_status_absent_and_present(conn: apsw.Connection) -> None:
    assert status(conn) is None
    updated = T0
    body = {"received": 10, "stored": 9, "dropped": 1}
    with conn:
        conn.execute("INSERT INTO collector_status(id, updated, body) VALUES (1, ?, ?)",
                      (updated, orjson.dumps(body).decode()))
    s = status(conn, now_ns=T0 + 3 * NS)
    assert s is not None
    assert {k: s[k] for k in body} == body
    assert s["updated"] == "2026-01-01T00:00:00.000Z" and s["age_s"] == 3.0


def test_status_updated_in_seconds(conn: apsw.Connection) -> None:
    with conn:
        conn.execute("INSERT INTO collector_status(id, updated, body) VALUES (1, ?, '{}')",
                     (T0 // NS,))
    s = status(conn, now_ns=T0 + NS)
    assert s is not None and s["updated_ns"] == T0 and s["age_s"] == 1.0


def test_status_without_table(tmp_path: Path) -> None:
    c = apsw.Connection(str(tmp_path / "bare.db"))
    assert status(c) is None
