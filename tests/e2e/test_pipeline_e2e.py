"""End to end with separate processes: producers → ZeroMQ → collector process → SQLite file.

Every test closes the books exactly: for each category, what the producer emitted equals what
was stored plus the drops the producer counted plus the gaps the collector counted.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import CollectorProc, producer_result, run_producer, wait_for

from otel_telemetry.categories import CATEGORIES


def _books(results: list[dict], stored: dict[str, int], gaps: dict[str, int]) -> None:
    for cat in CATEGORIES:
        emitted = sum(r["emitted"].get(cat, 0) for r in results)
        counted = sum(r["counters"]["by_category"].get(cat, {}).get("emitted", 0) for r in results)
        drops = sum(sum(r["counters"]["by_category"].get(cat, {}).get("dropped", {}).values()) for r in results)
        assert counted == emitted, (cat, counted, emitted)
        assert emitted == stored.get(cat, 0) + drops + gaps.get(cat, 0), (cat, emitted, stored, drops, gaps)


def test_two_producers_every_category_exact(collector: CollectorProc) -> None:
    procs = [run_producer(collector.endpoint, "--spans", "3000", wait=False) for _ in range(2)]
    results = [producer_result(p) for p in procs]  # type: ignore[arg-type]
    assert collector.stop() == 0
    stored = collector.counts_by_category()
    assert set(stored) == set(CATEGORIES)
    for r in results:
        assert r["shutdown_ok"] and r["counters"]["dropped"] == {}
    _books(results, stored, collector.status()["zmq"]["gaps"])
    assert sum(stored.values()) == 2 * 3001
    # record_telemetry events keep the original design's fields as columns
    row = collector.rows("SELECT type, category, subcategory, event, level, data FROM records "
                         "WHERE type = 'event' LIMIT 1")[0]
    assert row[:5] == ("event", "ai_research", "memory", "recall", "info")
    assert '"precision":0.9' in row[5]


@pytest.mark.heavy
def test_steady_10k_per_second_no_drops(collector: CollectorProc) -> None:
    r = run_producer(collector.endpoint, "--spans", "30000", "--rate", "10000")
    assert collector.stop() == 0
    assert r["counters"]["dropped"] == {}
    stored = collector.counts_by_category()
    assert sum(stored.values()) == 30001
    _books([r], stored, collector.status()["zmq"]["gaps"])  # type: ignore[list-item]


def test_collector_started_after_producer(tmp_path: Path) -> None:
    """Records emitted before any collector listens are held (up to the replay bound) and
    delivered once one subscribes: nothing lost."""
    c = CollectorProc(tmp_path)
    ready = tmp_path / "ready"
    proc = run_producer(c.endpoint, "--spans", "20000", "--rate", "4000", "--join-timeout", "0.1",
                        "--ready-file", str(ready), wait=False)
    wait_for(ready.exists, what="producer running")
    c.start()
    r = producer_result(proc)  # type: ignore[arg-type]
    assert c.stop() == 0
    stored = c.counts_by_category()
    assert r["counters"]["dropped"] == {} and r["shutdown_ok"]
    assert sum(stored.values()) == r["counters"]["sent"] == r["counters"]["emitted"] == 20001
    _books([r], stored, c.status()["zmq"]["gaps"])


def test_collector_started_after_producer_beyond_the_hold_bound(tmp_path: Path) -> None:
    """With a small bound, what does not fit while no collector listens is a counted drop."""
    c = CollectorProc(tmp_path)
    ready = tmp_path / "ready"
    proc = run_producer(c.endpoint, "--spans", "20000", "--rate", "4000", "--join-timeout", "0.1",
                        "--replay-buffer", "1000", "--ready-after", "3000", "--ready-file", str(ready),
                        wait=False)
    wait_for(ready.exists, what="3,000 records emitted with no collector")
    c.start()
    r = producer_result(proc)  # type: ignore[arg-type]
    assert c.stop() == 0
    stored = c.counts_by_category()
    gaps = c.status()["zmq"]["gaps"]
    assert r["counters"]["dropped"].get("no_collector", 0) > 0  # beyond the bound before it joined
    assert sum(stored.values()) == r["counters"]["sent"]
    _books([r], stored, gaps)


@pytest.mark.heavy
def test_kill9_mid_stream_then_restart(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path).start()
    ready = tmp_path / "ready"
    # The app waits at exit until the restarted collector has acknowledged the resend. With 10 s
    # (the default) on a machine loaded on both cores, the wait ran out first: the app exited with
    # 17,000-24,000 records reported unacknowledged (counted; 1,000-10,000 of them not yet stored),
    # which these books do not take. The wait's length is not what this test is about.
    proc = run_producer(c.endpoint, "--spans", "40000", "--rate", "8000", "--ready-file", str(ready),
                        "--shutdown-timeout", "120", wait=False)
    wait_for(ready.exists, what="producer running")
    wait_for(lambda: Path(c.db).exists() and c.rows("SELECT count(*) FROM records")[0][0] > 2000,
             what="some rows committed")
    c.kill9()
    committed = c.rows("SELECT count(*) FROM records")[0][0]
    c.start()
    r = producer_result(proc, timeout=300)  # type: ignore[arg-type]
    assert r["shutdown_ok"], r["counters"]
    assert c.stop() == 0
    assert c.rows("PRAGMA integrity_check") == [("ok",)]
    assert c.rows("SELECT count(*) - count(DISTINCT uid) FROM records") == [(0,)]
    total = c.rows("SELECT count(*) FROM records")[0][0]
    assert total >= committed
    _books([r], c.counts_by_category(), c.status()["zmq"]["gaps"])  # type: ignore[list-item]


def test_shutdown_without_collector_returns_within_timeout(tmp_path: Path) -> None:
    r = run_producer(f"ipc://{tmp_path}/nobody.ipc", "--spans", "500", "--join-timeout", "30",
                     "--shutdown-timeout", "1.5")
    assert r["shutdown_s"] < 1.5 + 0.5  # type: ignore[index]
    assert r["counters"]["sent"] == 0  # type: ignore[index]
    dropped = r["counters"]["dropped"]  # type: ignore[index]
    assert sum(dropped.values()) == 501 and set(dropped) <= {"no_collector", "shutdown"}


def test_sigint_stops_collector_cleanly(collector: CollectorProc) -> None:
    r = run_producer(collector.endpoint, "--spans", "600")
    assert collector.stop(signal.SIGINT) == 0
    assert sum(collector.counts_by_category().values()) == 601
    assert r["counters"]["sent"] == 601  # type: ignore[index]
