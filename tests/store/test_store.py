"""StoreWriter and connection helpers against real database files (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest

from otel_telemetry.store import writer as store
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

SRC = str(Path(__file__).resolve().parents[2] / "src")


def make_row(uid: bytes, timestamp: int = 1_700_000_000 * 10**9, category: str = "ai_behavior",
             **overrides: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(uid=uid, timestamp=timestamp, type="span", category=category, level="info",
                  data='{"x": "y"}', metadata="{}")
    values.update(overrides)
    return tuple(values[c] for c in COLUMNS)


def uid(n: int, prefix: int = 0) -> bytes:
    return prefix.to_bytes(8, "big") + n.to_bytes(8, "big")


def batch(start: int, count: int, prefix: int = 0, **checkpoints: int) -> WriteBatch:
    rows = [make_row(uid(i, prefix)) for i in range(start, start + count)]
    return WriteBatch(rows, {(b"pub", t): s for t, s in checkpoints.items()}, count)


def uids_in(path: Path) -> list[bytes]:
    conn = store.open_reader(str(path))
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT uid FROM records")]
    finally:
        conn.close()


def scalar(path: Path, sql: str) -> Any:
    conn = store.open_reader(str(path))
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "telemetry.db"


def test_open_writer_pragmas_and_validation(db: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        store.open_writer(str(db), synchronous="off")
    with pytest.raises(ValueError, match="synchronous"):
        StoreWriter(str(db), synchronous="extra")
    conn = store.open_writer(str(db), synchronous="FULL")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()

    reader = store.open_reader(str(db))
    with pytest.raises(apsw.ReadOnlyError):
        reader.execute("INSERT INTO retention(category, days) VALUES ('ai_research', 3)")
    reader.close()

    admin = store.open_admin(str(db))
    assert admin.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    admin.close()


def test_all_rows_stored_from_many_threads(db: Path) -> None:
    w = StoreWriter(str(db), batch_rows=300, flush_interval=0.01, queue_batches=4)
    w.start()

    def produce(prefix: int) -> None:
        for k in range(10):
            assert w.submit(batch(k * 50, 50, prefix), timeout=10)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert w.flush(10)
    s = w.stats()
    assert (s["stored"], s["duplicates"], s["batches"], s["received"]) == (2000, 0, 40, 2000)
    assert s["commits"] >= 1 and s["errors"] == 0 and s["last_commit_ns"] > 0
    assert w.shutdown(10)
    assert len(set(uids_in(db))) == 2000
    assert scalar(db, "PRAGMA integrity_check") == "ok"


def test_duplicates_ignored_and_counted(db: Path) -> None:
    w = StoreWriter(str(db), flush_interval=0.01)
    w.start()
    assert w.submit(batch(0, 100), 5)
    assert w.flush(5)
    assert w.submit(batch(50, 100), 5)  # 50 already stored, 50 new
    assert w.submit(batch(0, 10), 5)
    assert w.flush(5)
    s = w.stats()
    assert (s["stored"], s["duplicates"]) == (150, 60)
    assert w.shutdown(5)
    assert sorted(uids_in(db)) == [uid(i) for i in range(150)]


def test_checkpoints_persist_and_reload(db: Path) -> None:
    w = StoreWriter(str(db), flush_interval=0.01)
    assert w.load_checkpoints() == {}  # before start, no file yet
    w.start()
    assert w.submit(batch(0, 5, a=5, b=1), 5)
    assert w.submit(batch(5, 5, a=10), 5)
    assert w.flush(5)
    assert w.load_checkpoints() == {(b"pub", "a"): 10, (b"pub", "b"): 1}
    assert w.shutdown(5)

    again = StoreWriter(str(db))
    assert again.load_checkpoints() == {(b"pub", "a"): 10, (b"pub", "b"): 1}
    assert again.shutdown(1)


def test_shutdown_idempotent_and_safe_before_start(db: Path) -> None:
    never = StoreWriter(str(db))
    assert never.shutdown(1)
    assert never.shutdown(1)
    assert not never.submit(batch(0, 1), 0.01)  # shut down: refused, caller keeps it

    w = StoreWriter(str(db), flush_interval=0.01)
    w.start()
    assert w.submit(batch(0, 10), 5)
    assert w.shutdown(5)  # drains what was queued
    assert w.shutdown(5)
    assert not w.submit(batch(10, 10), 0.01)
    assert len(uids_in(db)) == 10
    assert scalar(db, "PRAGMA integrity_check") == "ok"
    assert not os.path.exists(str(db) + "-wal") or os.path.getsize(str(db) + "-wal") == 0


def test_submit_full_queue_returns_false_and_keeps_batch(db: Path) -> None:
    w = StoreWriter(str(db), queue_batches=2, flush_interval=0.01)
    assert w.submit(batch(0, 10), 0.01)
    assert w.submit(batch(10, 10), 0.01)
    rejected = batch(20, 10)
    assert not w.submit(rejected, 0.05)
    assert w.stats()["rejected"] == 1 and w.stats()["queue_depth"] == 2
    assert not w.flush(0.01)  # nothing can be committed before start
    w.start()
    assert w.submit(rejected, 5)  # the caller still had it and retries
    assert w.flush(5)
    assert w.shutdown(5)
    assert sorted(uids_in(db)) == [uid(i) for i in range(30)]


def test_bad_batch_rolls_back_alone(db: Path) -> None:
    w = StoreWriter(str(db), flush_interval=0.5)
    good = batch(0, 10, good=1)
    bad = WriteBatch([make_row(uid(100)), make_row(uid(101), data=None)], {(b"pub", "bad"): 1}, 2)
    short = WriteBatch([make_row(uid(200))[:-1]], {(b"pub", "short"): 1}, 1)
    # Queued before start so both coalesce into one transaction that fails as a whole.
    assert w.submit(good, 1) and w.submit(bad, 1) and w.submit(short, 1)
    w.start()
    assert w.flush(5)
    s = w.stats()
    # group failure + each bad batch failing alone; duplicates stays 0 (NOT NULL is not a dup)
    assert (s["errors"], s["dropped_rows"], s["stored"], s["duplicates"]) == (3, 3, 10, 0)
    assert w.submit(batch(10, 5), 5) and w.flush(5)  # the thread survived
    assert w.load_checkpoints() == {(b"pub", "good"): 1}
    assert w.shutdown(5)
    assert sorted(uids_in(db)) == [uid(i) for i in range(15)]


def test_status_row_merges_source_and_stats(db: Path) -> None:
    w = StoreWriter(str(db), flush_interval=0.01, status_interval=0.01,
                    status_source=lambda: {"receiver": {"connected": 2}})
    w.start()
    assert w.submit(batch(0, 3), 5) and w.flush(5)
    assert w.shutdown(5)  # writes a final status
    body = orjson.loads(scalar(db, "SELECT body FROM collector_status WHERE id = 1"))
    assert body["receiver"] == {"connected": 2}
    assert body["stored"] == 3 and body["duplicates"] == 0


_CHILD = """
import sys
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

ROWS = 40
def row(seq, i):
    v = dict.fromkeys(COLUMNS)
    v.update(uid=seq.to_bytes(8, "big") + i.to_bytes(8, "big"), timestamp=seq, type="span",
             category="ai_behavior", level="info", data='{"x": "' + "y" * 200 + '"}', metadata="{}")
    return tuple(v[c] for c in COLUMNS)

w = StoreWriter(sys.argv[1], batch_rows=200, flush_interval=0.005)
seq = w.load_checkpoints().get((b"pub", "t"), 0)
w.start()
print("start", seq, flush=True)
while True:
    b = WriteBatch([row(seq, i) for i in range(ROWS)], {(b"pub", "t"): seq + 1}, ROWS)
    while not w.submit(b, 1.0):
        pass
    seq += 1
    if seq % 20 == 0:
        w.flush(30)
        print("acked", seq, flush=True)
"""


def test_kill_9_mid_stream_keeps_rows_and_checkpoints_consistent(db: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    acked = 0
    for _ in range(2):  # the second run resumes from the first run's checkpoint
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db)], stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        assert first[0] == "start" and int(first[1]) >= acked
        target = int(first[1]) + 60
        while acked < target:
            line = proc.stdout.readline()
            assert line, "child exited early"
            acked = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it keeps submitting after each ack
        proc.wait(10)
        proc.stdout.close()

        conn = apsw.Connection(str(db))  # read-write so WAL recovery can run
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (next_seq,) = conn.execute(
            "SELECT next_seq FROM publishers WHERE publisher = ? AND topic = 't'", (b"pub",)
        ).fetchone()
        assert next_seq >= acked  # nothing acknowledged was lost
        per_seq = dict(conn.execute("SELECT timestamp, count(*) FROM records GROUP BY timestamp"))
        # Rows and checkpoint commit together: exactly the batches below next_seq, each complete.
        assert per_seq == {s: 40 for s in range(next_seq)}
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT uid) FROM records").fetchone()
        assert total == distinct == 40 * next_seq
        conn.close()
