"""Retention against real database files, with the clock passed explicitly."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from otel_telemetry.categories import CATEGORIES, DEFAULT_RETENTION_DAYS
from otel_telemetry.store import retention as ret
from otel_telemetry.store import writer as store
from otel_telemetry.store.retention import NS_PER_DAY, RetentionPolicy
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NOW = 1_800_000_000 * 10**9


def make_row(n: int, timestamp: int, category: str, size: int = 10) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(uid=n.to_bytes(16, "big"), timestamp=timestamp, type="span", category=category,
                  level="info", data='{"x": "' + "y" * size + '"}', metadata="{}")
    return tuple(values[c] for c in COLUMNS)


def insert(conn: apsw.Connection, rows: list[tuple[Any, ...]]) -> None:
    with ret.transaction(conn):
        conn.executemany(f"INSERT INTO records({', '.join(COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)


def uid_set(conn: apsw.Connection) -> set[int]:
    return {int.from_bytes(r[0], "big") for r in conn.execute("SELECT uid FROM records")}


def days_ago(days: float) -> int:
    return NOW - int(days * NS_PER_DAY)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    c = store.open_writer(str(tmp_path / "t.db"))
    yield c
    c.close()


def test_exact_boundary(conn: apsw.Connection) -> None:
    cutoff = ret.cutoffs({"system_performance": 30}, NOW)["system_performance"]
    assert cutoff == NOW - 30 * 86_400 * 10**9
    insert(conn, [make_row(1, cutoff, "system_performance"), make_row(2, cutoff - 1, "system_performance"),
                  make_row(3, cutoff + 1, "system_performance")])
    days = {**DEFAULT_RETENTION_DAYS, "system_performance": 30}
    assert ret.count_expired(conn, days, NOW)["system_performance"] == 1
    assert ret.purge_step(conn, days, NOW, 100)["system_performance"] == 1
    assert uid_set(conn) == {1, 3}


def test_per_category_days_differ(conn: apsw.Connection) -> None:
    insert(conn, [make_row(1, days_ago(100), "ai_research"), make_row(2, days_ago(100), "system_performance"),
                  make_row(3, days_ago(100), "error_patterns"), make_row(4, days_ago(89), "ai_behavior")])
    out = ret.purge_all(conn, RetentionPolicy(), NOW)
    assert out["deleted"] == {**dict.fromkeys(CATEGORIES, 0), "system_performance": 1, "error_patterns": 1}
    assert uid_set(conn) == {1, 4}


def test_purge_keeps_exactly_the_unexpired(conn: apsw.Connection) -> None:
    rnd = random.Random(7)
    rows = []
    for n in range(3000):
        category = rnd.choice(CATEGORIES)
        rows.append(make_row(n, NOW - rnd.randrange(0, 400 * NS_PER_DAY), category))
    insert(conn, rows)
    policy = RetentionPolicy(batch_rows=97)
    limits = ret.cutoffs(policy.days, NOW)
    expected = {int.from_bytes(r[0], "big") for r in rows if r[1] >= limits[r[3]]}
    dry = ret.count_expired(conn, policy.days, NOW)
    out = ret.purge_all(conn, policy, NOW)
    assert out["deleted"] == dry and sum(dry.values()) == 3000 - len(expected)
    assert uid_set(conn) == expected
    assert sum(ret.count_expired(conn, policy.days, NOW).values()) == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_purge_step_respects_batch_rows(conn: apsw.Connection) -> None:
    insert(conn, [make_row(n, days_ago(40), "system_performance" if n % 2 else "user_interaction")
                  for n in range(250)])
    steps = []
    while True:
        step = ret.purge_step(conn, DEFAULT_RETENTION_DAYS, NOW, 100)
        steps.append(sum(step.values()))
        assert steps[-1] <= 100
        if steps[-1] == 0:
            break
    assert steps == [100, 100, 50, 0]
    with pytest.raises(ValueError):
        ret.purge_step(conn, DEFAULT_RETENTION_DAYS, NOW, 0)


def test_file_shrinks_after_purge_all(tmp_path: Path) -> None:
    path = str(tmp_path / "big.db")
    w = store.open_writer(path)
    insert(w, [make_row(n, days_ago(60 if n % 10 else 1), "component_interactions", size=500)
               for n in range(20_000)])
    w.close()  # last connection: checkpoints and removes the WAL
    before = os.path.getsize(path)
    assert before > 8_000_000
    admin = store.open_admin(path)
    out = ret.purge_all(admin, RetentionPolicy(), NOW)
    assert out["deleted"]["component_interactions"] == 18_000 and out["pages_freed"] > 0
    assert os.path.getsize(path + "-wal") == 0  # TRUNCATE checkpoint
    assert admin.execute("SELECT count(*) FROM records").fetchone()[0] == 2_000
    admin.close()
    after = os.path.getsize(path)
    assert after < before * 0.3
    again = store.open_admin(path)
    assert ret.vacuum_step(again, 1000) == 0
    again.close()


def test_size_cap_deletes_oldest_first(conn: apsw.Connection) -> None:
    rnd = random.Random(3)
    stamps = rnd.sample(range(NOW - 10**12, NOW), 3000)  # all young: only the cap applies
    insert(conn, [make_row(n, ts, rnd.choice(CATEGORIES), size=500) for n, ts in enumerate(stamps)])
    cap = ret.used_bytes(conn) // 2
    deleted = 0
    while n := ret.size_cap_step(conn, cap, 200):
        assert n <= 200
        deleted += n
    assert ret.used_bytes(conn) <= cap and 0 < deleted < 3000
    kept = {r[0] for r in conn.execute("SELECT timestamp FROM records")}
    assert kept == set(sorted(stamps)[deleted:])  # exactly the newest survive
    assert ret.purge_all(conn, RetentionPolicy(max_size_bytes=cap), NOW)["capped"] == 0


def test_retention_table_overrides_policy(conn: apsw.Connection) -> None:
    insert(conn, [make_row(1, days_ago(2), "system_performance"), make_row(2, days_ago(2), "ai_behavior")])
    ret.set_days(conn, "system_performance", 1)
    ret.set_days(conn, "ai_research", 400)
    ret.set_days(conn, "ai_research", 500)  # update, not a second row
    days = ret.effective_days(conn, RetentionPolicy())
    assert days == {**DEFAULT_RETENTION_DAYS, "system_performance": 1, "ai_research": 500}
    ret.purge_all(conn, RetentionPolicy(), NOW)
    assert uid_set(conn) == {2}


@pytest.mark.parametrize("category,days", [("nope", 5), ("ai_research", 0), ("ai_research", -3),
                                           ("ai_research", True), ("ai_research", "5"),
                                           ("ai_research", 1.5)])
def test_set_days_rejects_bad_input(conn: apsw.Connection, category: str, days: Any) -> None:
    with pytest.raises(ValueError, match="category|days"):
        ret.set_days(conn, category, days)
    assert conn.execute("SELECT count(*) FROM retention").fetchone()[0] == 0


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="unknown category"):
        RetentionPolicy(days={"bogus": 3})
    with pytest.raises(ValueError, match="from 1 to 100000"):
        RetentionPolicy(days={"ai_research": 0})
    with pytest.raises(ValueError, match="from 1 to 100000"):  # its cutoff would overflow int64
        RetentionPolicy(days={"ai_research": 99_999_999_999})
    with pytest.raises(ValueError):
        RetentionPolicy(max_size_bytes=0)


def test_writer_purges_expired_while_ingesting(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    policy = RetentionPolicy(batch_rows=50, vacuum_pages=10)
    w = StoreWriter(str(path), flush_interval=0.01, retention=policy, retention_interval=0.02,
                    clock=lambda: NOW)
    w.start()
    old, new = set(), set()
    n = 0
    for k in range(30):
        rows = []
        for _ in range(40):
            expired = n % 3 == 0
            rows.append(make_row(n, days_ago(31 if expired else 29), "user_interaction", size=300))
            (old if expired else new).add(n)
            n += 1
        assert w.submit(WriteBatch(rows, {(b"p", "t"): k + 1}, len(rows)), 5)
    w.request_purge()
    assert w.flush(10)
    deadline = time.monotonic() + 10
    # The run ends after its deletes (vacuum steps follow): wait for both, not for a time.
    while (w.stats()["purged"] < len(old) or w.stats()["retention_runs"] < 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    s = w.stats()
    assert (s["stored"], s["purged"], s["duplicates"], s["errors"]) == (n, len(old), 0, 0)
    assert s["retention_runs"] >= 1
    assert w.shutdown(10)
    reader = store.open_reader(str(path))
    assert uid_set(reader) == new
    assert reader.execute("SELECT next_seq FROM publishers").fetchone()[0] == 30
    assert reader.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reader.close()


def make_typed(n: int, timestamp: int, category: str, rtype: str) -> tuple[Any, ...]:
    row = list(make_row(n, timestamp, category))
    row[COLUMNS.index("type")] = rtype
    return tuple(row)


def test_per_type_days_purge_exactly_in_bounded_steps(conn: apsw.Connection) -> None:
    """001's "events 90, metrics 180, traces 30" plus a pair: each row kept by pair > type > category,
    and a step examines at most batch_rows rows even when old rows of longer-kept types come first."""
    rnd = random.Random(11)
    types = ("span", "metric", "log", "event")
    rows = [make_typed(n, NOW - rnd.randrange(0, 400 * NS_PER_DAY), rnd.choice(CATEGORIES), rnd.choice(types))
            for n in range(4000)]
    insert(conn, rows)
    days = {**DEFAULT_RETENTION_DAYS, "event": 90, "metric": 180, "span": 30, "ai_research.event": 400}
    assert ret.resolve(days, "ai_research", "event") == (400, "ai_research.event")
    assert ret.resolve(days, "ai_research", "span") == (30, "span")
    assert ret.resolve(days, "ai_research", "log") == (365, "ai_research")
    keep = {int.from_bytes(r[0], "big") for r in rows
            if r[1] >= NOW - ret.resolve(days, r[3], r[2])[0] * NS_PER_DAY}
    dry = ret.count_expired(conn, days, NOW)
    purge = ret.Purge(days, NOW)
    deleted = 0
    while not purge.done:
        step = sum(purge.step(conn, 97).values())
        assert step <= 97
        deleted += step
    assert uid_set(conn) == keep and deleted == sum(dry.values()) == 4000 - len(keep)
    cells = ret.count_expired_cells(conn, days, NOW)
    assert len(cells) == 24 and sum(cells.values()) == 0
    with pytest.raises(ValueError, match="unknown category or type"):
        ret.set_days(conn, "ai_research.trace", 3)
    ret.set_days(conn, "ai_research.span", 400)  # an override of a pair, stored like a category's
    assert ret.effective_days(conn, RetentionPolicy())["ai_research.span"] == 400
