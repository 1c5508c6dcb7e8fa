"""OTLP forwarding against a real OTLP receiver process (tests/otlp_sink_server.py) on 127.0.0.1.

The issue's "10 minutes at 1k spans/s" outage is scaled down to 20k spans (200 batches of 100)
spread over a downstream kill, a forwarder restart on the same queue_dir and a downstream restart.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import wait_for
from otlp_sink import Sink, free_port

from otel_telemetry.collector.forward.forwarder import Forwarder, ForwardTarget, parse_forward_config
from otel_telemetry.otlp import decode as otlp
from otel_telemetry.otlp.encode import encode

HERE = Path(__file__).parents[1]  # tests/
RES = {"service.name": "fwd-test", "host.name": "h1", "tags": ["a", "b"], "n": 3}


@pytest.fixture
def sinks(tmp_path: Path) -> Any:
    made: list[Sink] = []

    def make(*flags: str, **ports: int) -> Sink:
        sink = Sink(tmp_path, *flags, **ports)
        made.append(sink)
        return sink

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def forwarders() -> Any:
    made: list[Forwarder] = []

    def make(**kw: Any) -> Forwarder:
        kw.setdefault("retry_initial", 0.05)
        kw.setdefault("retry_max", 0.3)
        kw.setdefault("timeout", 5.0)
        fwd = Forwarder(ForwardTarget(**kw))
        made.append(fwd)
        return fwd

    yield make
    for f in made:
        f.shutdown(2.0)


def spans(n: int, prefix: str = "op", start: int = 0) -> list[tuple[Any, ...]]:
    out = []
    for i in range(start, start + n):
        trace = os.urandom(16)
        events = [("exception", 1_700_000_000_000_000_500, {"exception.type": "ValueError"})] if i % 5 == 0 else []
        links = [(os.urandom(16), os.urandom(8), {"why": "batch"})] if i % 7 == 0 else []
        out.append((f"{prefix}-{i}", trace, os.urandom(8), os.urandom(8) if i % 2 else None,
                    1_700_000_000_000_000_000 + i, 1_700_000_000_000_001_000 + i, i % 5, i % 3,
                    "boom" if i % 3 == 2 else None, {"i": i, "f": 0.5, "ok": True, "tags": ["x", "y"]},
                    events, links, "fwd.scope", "1.2"))
    return out


def metrics() -> list[tuple[Any, ...]]:
    t, s = 1_700_000_000_000_000_000, 1_699_999_999_000_000_000
    return [
        ("queue.depth", "items waiting", "1", "gauge", t, s, 7, {"q": "a"}, {}, "m.scope", None),
        ("requests", "", "1", "sum", t, s, 12, {"route": "/x"}, {"monotonic": True, "temporality": "cumulative"},
         "m.scope", None),
        ("temp", "", "Cel", "sum", t, s, -1.5, {}, {"monotonic": False, "temporality": 1}, "m.scope", None),
        ("latency", "", "ms", "histogram", t, s, 30.0,
         {"route": "/x"}, {"count": 3, "sum": 30.0, "min": 5.0, "max": 15.0, "bounds": [10.0], "counts": [1, 2]},
         "m.scope", None),
        ("size", "", "By", "exponential_histogram", t, s, 12.0, {},
         {"count": 2, "sum": 12.0, "scale": 1, "zero_count": 0, "positive": {"offset": 2, "counts": [1, 1]}},
         "m.scope", None),
        ("rpc.q", "", "s", "summary", t, s, 3.0, {}, {"count": 2, "sum": 3.0,
                                                     "quantiles": [{"quantile": 0.5, "value": 1.0}]},
         "m.scope", None),
    ]


def logs(n: int) -> list[tuple[Any, ...]]:
    return [(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_100 + i, 9 + (i % 3) * 4, "INFO",
             f"message {i}" if i % 2 else {"event": "x", "i": i}, {"i": i},
             os.urandom(16) if i % 2 else None, os.urandom(8) if i % 2 else None,
             "app.event" if i == 0 else None, "log.scope", None) for i in range(n)]


def _settled(fwd: Forwarder) -> bool:
    c = fwd.counters()
    return c["queued"] == 0 and c["consumed"] + c["restored"] == c["sent"] + sum(c["dropped"].values())


# --- delivery -------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_everything_forwarded_exactly_once(sinks: Any, forwarders: Any, protocol: str) -> None:
    sink = sinks().start()
    fwd = forwarders(endpoint=sink.endpoint(protocol), protocol=protocol, max_batch_items=64,
                     compression="gzip" if protocol == "grpc" else "none")
    fwd.start()
    sent_spans = []
    for b in range(10):  # 10 batches of 25, two resources: several consumed batches per request
        batch = spans(25, start=b * 25)
        sent_spans += batch
        fwd.consume("span", {**RES, "batch.parity": b % 2}, batch)
    fwd.consume("metric", RES, metrics())
    fwd.consume("log", RES, logs(20))
    wait_for(lambda: _settled(fwd), what="forwarder drained")
    c = fwd.counters()
    assert c["sent"] == 250 + 6 + 20 and c["dropped"] == {} and c["failed"] == 0
    got = sink.items("span")
    assert len(got) == 250
    by_id = {x["span_id"]: x for x in got}
    assert len(by_id) == 250
    for rec in sent_spans:
        x = by_id[rec[2].hex()]
        assert x["trace_id"] == rec[1].hex() and x["name"] == rec[0]
        assert x["parent_span_id"] == (rec[3].hex() if rec[3] else "")
        assert x["kind"] == rec[6] + 1 and x["status_code"] == rec[7]
        assert x["status_message"] == (rec[8] or "")
        assert (x["start"], x["end"]) == (rec[4], rec[5])
        assert x["attributes"] == rec[9] and x["scope"] == "fwd.scope" and x["scope_version"] == "1.2"
        assert x["resource"]["service.name"] == "fwd-test" and x["resource"]["tags"] == ["a", "b"]
        assert [(e["name"], e["time"], e["attributes"]) for e in x["events"]] == [tuple(e) for e in rec[10]]
        assert [(lk["trace_id"], lk["span_id"]) for lk in x["links"]] == [(t.hex(), s.hex()) for t, s, _ in rec[11]]
    pts = {p["name"]: p for p in sink.items("metric")}
    assert len(sink.items("metric")) == 6
    assert pts["queue.depth"]["type"] == "gauge" and pts["queue.depth"]["value"] == 7
    assert pts["requests"]["monotonic"] is True and pts["requests"]["temporality"] == 2
    assert pts["temp"]["value"] == -1.5 and pts["temp"]["temporality"] == 1
    assert pts["latency"]["bounds"] == [10.0] and pts["latency"]["counts"] == [1, 2]
    assert pts["latency"]["count"] == 3 and pts["latency"]["min"] == 5.0
    assert pts["size"]["positive"] == {"offset": 2, "counts": [1, 1]} and pts["size"]["scale"] == 1
    assert pts["rpc.q"]["quantiles"] == [[0.5, 1.0]]
    got_logs = sorted(sink.items("log"), key=lambda x: x["time"])
    assert len(got_logs) == 20
    for rec, x in zip(logs_sorted := sorted(logs(20), key=lambda r: r[0]), got_logs, strict=True):
        assert x["severity_number"] == rec[2] and x["body"] == rec[4]
        assert (x["trace_id"] != "") == (rec[6] is not None)
    assert got_logs[0]["event_name"] == "app.event" and len(logs_sorted) == 20


def test_encoding_round_trips_through_our_otlp_decoder() -> None:
    """Encode → the collector's own OTLP decoder gives back the same tuples (kind/status mapping)."""
    recs = spans(20)
    enc = encode("span", [(RES, recs)])
    assert (enc.items, enc.bad) == (20, 0)
    (res, back, _), = otlp.decode_traces_pb(enc.body).batches
    assert res == RES
    assert sorted(map(tuple, back)) == sorted(
        (*r[:10], list(r[10]), list(r[11]), *r[12:]) for r in recs)
    bad = [("x", b"short", os.urandom(8), None, 1, 2, 0, 0, None, {}, None, None, None, None)]
    enc = encode("span", [(RES, recs[:3] + bad)])
    assert (enc.items, enc.bad) == (3, 1)


# --- outage, restart, queue on disk -----------------------------------------------------------------


def _on_disk(queue_dir: Path) -> int:
    db = queue_dir / "queue.sqlite"
    if not db.exists():
        return 0
    # apsw, the same SQLite library as the queue's: two SQLite copies in one process break each
    # other's POSIX locks (closing one's file descriptor drops the other's locks).
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("SELECT coalesce(sum(items), 0) FROM requests").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_outage_across_forwarder_restart_loses_nothing(tmp_path: Path, sinks: Any, forwarders: Any,
                                                       protocol: str) -> None:
    """20k spans: 2k delivered, sink killed -9, 16k consumed during the outage, forwarder
    restarted on the same queue_dir, 2k more, sink restarted: all 20k arrive exactly once."""
    qdir = tmp_path / "queue"
    sink = sinks().start()
    kw = dict(endpoint=sink.endpoint(protocol), protocol=protocol, queue_dir=str(qdir), max_batch_items=1000)
    batches = [spans(100, start=i * 100) for i in range(200)]
    a = forwarders(**kw)
    a.start()
    for b in batches[:20]:
        a.consume("span", RES, b)
    wait_for(lambda: a.counters()["sent"] == 2000, what="first 2k delivered")
    sink.stop(signal.SIGKILL)
    for b in batches[20:180]:
        a.consume("span", RES, b)
    wait_for(lambda: a.counters()["retries"] > 0, what="forwarder in backoff")
    # Persisted by the encoder thread while the collector is still running (crash-safe), ...
    wait_for(lambda: _on_disk(qdir) == 16000, what="outage batches on disk")
    assert a.shutdown(5.0)
    c = a.counters()
    assert (c["sent"], c["queued"], c["dropped"]) == (2000, 16000, {})
    b_fwd = forwarders(**kw)  # the restarted collector's forwarder
    b_fwd.start()
    assert b_fwd.counters()["restored"] == 16000
    for b in batches[180:]:
        b_fwd.consume("span", RES, b)
    wait_for(lambda: _on_disk(qdir) == 18000, what="all pending on disk")
    sink.start()  # same ports, same output file
    wait_for(lambda: b_fwd.counters()["sent"] == 18000, timeout=30, what="backlog delivered")
    assert b_fwd.shutdown(5.0)
    assert b_fwd.counters()["dropped"] == {} and _on_disk(qdir) == 0
    got = Counter(x["span_id"] for x in sink.items("span"))
    expected = {rec[2].hex() for batch in batches for rec in batch}
    assert len(got) == 20000 and set(got) == expected
    assert max(got.values()) == 1  # exactly once


@pytest.mark.heavy
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_consume_never_blocks_on_a_hung_downstream(forwarders: Any, protocol: str) -> None:
    """The downstream accepts TCP but never answers: the sender is stuck in its first attempt
    (failed == 0) while a producer thread consumes 200 batches to completion."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        port = hung.getsockname()[1]
        scheme = "grpc" if protocol == "grpc" else "http"
        fwd = forwarders(endpoint=f"{scheme}://127.0.0.1:{port}", protocol=protocol, timeout=60.0,
                         max_queue_batches=50, max_batch_items=10)
        fwd.start()
        fwd.consume("span", RES, spans(10))
        hung.settimeout(20)
        conn, _ = hung.accept()  # the sender is now inside its first attempt, which never ends
        producer = threading.Thread(target=lambda: [fwd.consume("span", RES, spans(10)) for _ in range(200)])
        producer.start()
        producer.join(30)  # liveness guard only
        assert not producer.is_alive()
        c = fwd.counters()
        assert c["failed"] == 0 and c["sent"] == 0  # the first send has not even timed out yet
        assert c["consumed"] == 2010 == c["queued"] + c["dropped"]["queue_full"]
        assert c["queued"] == 50 * 10
        assert fwd.shutdown(10.0)  # aborts the hanging send (returns as soon as it has)
        conn.close()
        c = fwd.counters()
        assert c["queued"] == 0 and c["dropped"]["shutdown"] == 500


def test_consume_is_prompt_while_the_forwarder_backs_off(forwarders: Any) -> None:
    fwd = forwarders(endpoint=f"http://127.0.0.1:{free_port()}", retry_initial=0.5, retry_max=2.0,
                     max_queue_batches=50)
    fwd.start()
    fwd.consume("log", RES, logs(10))
    wait_for(lambda: fwd.counters()["retries"] >= 1, what="forwarder in backoff")
    producer = threading.Thread(target=lambda: [fwd.consume("log", RES, logs(10)) for _ in range(200)])
    producer.start()
    producer.join(30)
    assert not producer.is_alive()
    c = fwd.counters()
    assert c["sent"] == 0 and c["consumed"] == 2010 == c["queued"] + sum(c["dropped"].values())
    assert c["dropped"] == {"queue_full": (201 - 50) * 10}
    assert fwd.shutdown(10.0)
    assert fwd.counters()["dropped"]["shutdown"] == 500


# --- error classes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "status", "reason"), [
    ("http/protobuf", 400, "http_400"), ("grpc", 400, "grpc_invalid_argument"),
    ("http/protobuf", 413, "http_413"), ("grpc", 413, "grpc_resource_exhausted"),
    ("grpc", 401, "grpc_unauthenticated"),
])
def test_permanent_error_drops_without_retrying(sinks: Any, forwarders: Any, protocol: str, status: int,
                                                 reason: str) -> None:
    sink = sinks("--fail-status", str(status)).start()
    fwd = forwarders(endpoint=sink.endpoint(protocol), protocol=protocol)
    fwd.start()
    for _ in range(3):
        fwd.consume("span", RES, spans(5))
    wait_for(lambda: fwd.counters()["dropped"].get(reason) == 15, what=f"dropped as {reason}")
    c = fwd.counters()
    assert c["retries"] == 0 and c["sent"] == 0 and c["queued"] == 0
    assert len(sink.attempts()) == c["failed"] >= 1  # one attempt per request, none repeated
    assert sink.items() == []


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_retryable_then_recovery_delivers_once_honouring_retry_after(sinks: Any, forwarders: Any,
                                                                     protocol: str) -> None:
    sink = sinks("--fail-status", "503", "--fail-first", "2", "--retry-after", "1").start()
    fwd = forwarders(endpoint=sink.endpoint(protocol), protocol=protocol)
    fwd.start()
    batch = spans(10)
    fwd.consume("span", RES, batch)
    wait_for(lambda: fwd.counters()["sent"] == 10, what="delivered after recovery")
    c = fwd.counters()
    assert (c["retries"], c["failed"], c["dropped"]) == (2, 2, {})
    att = sink.attempts()
    assert [a["status"] for a in att] == [503, 503, 200]
    # Our own backoff would be <= 0.075 s; the server asked for 1 s and got it.
    assert att[1]["t"] - att[0]["t"] >= 0.95 and att[2]["t"] - att[1]["t"] >= 0.95
    assert sorted(x["span_id"] for x in sink.items("span")) == sorted(r[2].hex() for r in batch)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_partial_success_counts_rejected(sinks: Any, forwarders: Any, protocol: str) -> None:
    sink = sinks("--reject-prefix", "bad").start()
    fwd = forwarders(endpoint=sink.endpoint(protocol), protocol=protocol)
    fwd.start()
    fwd.consume("span", RES, spans(7) + spans(3, prefix="bad"))
    wait_for(lambda: _settled(fwd), what="settled")
    c = fwd.counters()
    assert c["sent"] == 7 and c["dropped"] == {"rejected": 3} and c["retries"] == 0
    assert len(sink.items("span")) == 7


def test_shutdown_before_start_with_queue_dir_persists(tmp_path: Path) -> None:
    target = ForwardTarget(endpoint=f"http://127.0.0.1:{free_port()}", queue_dir=str(tmp_path / "q"))
    fwd = Forwarder(target)
    fwd.consume("span", RES, spans(5))
    assert fwd.shutdown(10.0) and fwd.shutdown(10.0)
    assert _on_disk(tmp_path / "q") == 5
    fwd2 = Forwarder(ForwardTarget(endpoint="http://127.0.0.1:1"))
    assert fwd2.shutdown(0) and fwd2.counters()["dropped"] == {}


# --- configuration ---------------------------------------------------------------------------------


def test_parse_forward_config() -> None:
    raw = [{"endpoint": "http://127.0.0.1:4318", "protocol": "http/protobuf",
            "headers": {"authorization": "Bearer x"}, "timeout": 10, "queue_dir": "/tmp/q",
            "max_queue_batches": 10000},
           {"endpoint": "grpc://127.0.0.1:4317"}]
    a, b = parse_forward_config(raw, "collector.yaml: forward")
    assert a.protocol == "http/protobuf" and a.headers == {"authorization": "Bearer x"} and a.timeout == 10.0
    assert a.queue_dir == "/tmp/q" and a.max_queue_batches == 10000
    assert b.protocol == "grpc" and b.queue_dir is None
    assert a.signals == b.signals == ("traces", "metrics", "logs")
    [c] = parse_forward_config([{"endpoint": "http://vm:8428/opentelemetry", "signals": ["metrics"]}], "f")
    assert c.signals == ("metrics",)
    assert parse_forward_config(None, "f") == []


@pytest.mark.parametrize(("entry", "needle"), [
    ({"endpoint": "http://h:1", "retries": 3}, "unknown key 'retries'"),
    ({"endpoint": "http://h:1", "protocol": "http/json"}, "protocol must be"),
    ({"endpoint": "grpc://h:1", "protocol": "http/protobuf"}, "does not match a grpc://"),
    ({"endpoint": "ftp://h:1"}, "endpoint 'ftp://h:1'"),
    ({"protocol": "grpc"}, "endpoint is required"),
    ({"endpoint": "http://h:1", "timeout": 0}, "timeout: must be > 0"),
    ({"endpoint": "http://h:1", "max_queue_batches": "many"}, "max_queue_batches: expected an integer"),
    ({"endpoint": "http://h:1", "headers": {"a": 1}}, "headers must map strings"),
    ({"endpoint": "http://h:1", "compression": "zstd"}, "compression must be"),
    ({"endpoint": "http://h:1", "signals": ["spans"]}, "signals must be a non-empty list"),
    ({"endpoint": "http://h:1", "signals": []}, "signals must be a non-empty list"),
])
def test_parse_forward_config_names_the_bad_key(entry: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match="collector.yaml: forward\\[0\\]") as err:
        parse_forward_config([entry], "collector.yaml: forward")
    assert needle in str(err.value)


def test_parse_forward_config_rejects_shared_queue_dir() -> None:
    with pytest.raises(ValueError, match="queue_dir"):
        parse_forward_config([{"endpoint": "http://h:1", "queue_dir": "/q"},
                              {"endpoint": "grpc://h:2", "queue_dir": "/q"}], "forward")
