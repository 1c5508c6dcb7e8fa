"""Rows dated in the future and absurd span durations (issue 15 item 13, the rest), over OTLP/HTTP and
ZeroMQ into a real collector process.

A start time in 2200 used to be stored as is: outside every ``--last`` window for 174 years, or
inside every one where the window has no end. It is now stored at its arrival time, the original
kept in ``metadata.adjusted.timestamp``. A span ending before it starts, or lasting longer than 7
days, no longer sets p95/p99/max: its ``duration_ms`` is NULL and the value is kept in
``metadata.adjusted.duration_ms``. Both are counted in ``status`` (``adjusted``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from conftest import CollectorProc, wait_for
from test_collector_input import GOOD_SPAN, _publisher
from test_store_faults import http_port, post

from otel_telemetry import wire

Y2200 = 7_258_118_400 * 10**9  # 2200-01-01T00:00:00Z in ns (below 2^63)
DAY_NS = 86_400 * 10**9
NORMAL_MS = range(1, 11)  # ten ordinary spans of 1..10 ms


def _times(now: int) -> list[tuple[int, int]]:
    """(start, end) of 13 spans: ten ordinary, one in 2200, one ending before it starts, one of 30 days."""
    out = [(now - 10**9, now - 10**9 + ms * 10**6) for ms in NORMAL_MS]
    return [*out, (Y2200, Y2200 + 5 * 10**6), (now - 10**9, now - 2 * 10**9), (now - 31 * DAY_NS, now - DAY_NS)]


def _otlp_body(now: int) -> dict[str, Any]:
    spans = [{"traceId": f"{0xA000 + i:032x}", "spanId": f"{0xA000 + i:016x}", "name": f"op{i}", "kind": 1,
              "startTimeUnixNano": str(s), "endTimeUnixNano": str(e)} for i, (s, e) in enumerate(_times(now))]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}


def _zmq_records(now: int) -> list[tuple[Any, ...]]:
    recs = []
    for i, (s, e) in enumerate(_times(now)):
        r = list(GOOD_SPAN)
        r[1], r[2], r[4], r[5] = (0xB000 + i).to_bytes(16, "big"), (0xB000 + i).to_bytes(8, "big"), s, e
        recs.append(tuple(r))
    return recs


def _check(c: CollectorProc, trace_prefix: str, before: int, after: int) -> None:
    rows = c.rows("SELECT timestamp, duration_ms, metadata FROM records WHERE trace_id LIKE ? ORDER BY span_id",
                  (trace_prefix + "%",))
    assert len(rows) == 13
    ordinary, future, negative, month = rows[:10], rows[10], rows[11], rows[12]
    assert sorted(d for _, d, _ in ordinary) == [float(ms) for ms in NORMAL_MS]
    assert all(json.loads(m).get("adjusted") is None for _, _, m in ordinary)
    # The 2200 row: stored at its arrival, the original time kept.
    assert before <= future[0] <= after and json.loads(future[2])["adjusted"] == {"timestamp": Y2200}
    assert future[1] == 5.0  # its duration is fine
    assert negative[1] is None and json.loads(negative[2])["adjusted"] == {"duration_ms": -1000.0}
    assert month[1] is None and json.loads(month[2])["adjusted"] == {"duration_ms": 30 * 86_400_000.0}


def _stats(db: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "otel_telemetry", "stats", "--db", db, "--last", "1h",
                          "--format", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_future_rows_and_absurd_durations_over_otlp_and_zmq(collector: CollectorProc) -> None:
    before = time.time_ns()
    assert post(http_port(collector), _otlp_body(before)) == 200
    after = time.time_ns()
    _check(collector, "0" * 28 + "a", before, after)
    wait_for(lambda: collector.status().get("adjusted") == {"future_timestamp": 1, "absurd_duration": 2},
             what="the adjustments counted (status row)")

    ctx, pub = _publisher(collector.endpoint)
    try:
        before = time.time_ns()
        pub.send_multipart(wire.encode(wire.new_packer(), b"telemetry.ai_behavior.times", wire.KIND_SPANS,
                                       b"T" * 16, 0, {}, _zmq_records(before)))
        wait_for(lambda: collector.rows("SELECT count(*) FROM records")[0][0] == 26, what="the ZeroMQ spans stored")
        after = time.time_ns()
    finally:
        pub.close(0)
        ctx.term()
    _check(collector, "0" * 28 + "b", before, after)
    wait_for(lambda: collector.status()["adjusted"] == {"future_timestamp": 2, "absurd_duration": 4},
             what="the adjustments counted")
    z = collector.status()["zmq"]
    assert z["rejected"] == {} and z["gaps_total"] == 0

    # The last hour holds every row but the two 30-day spans (they started a month ago), the 2200
    # ones included; the latency figures are the ordinary spans'.
    stats = _stats(collector.db)
    assert stats["total"] == 24, stats
    latency = stats["latency_ms"]["overall"]
    assert latency["max"] == 10.0 and latency["p99"] == 10.0, latency


