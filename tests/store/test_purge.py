"""``otel-telemetry purge`` on real database files, written by the real store writer; no mocks."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import orjson
import pytest
from click.testing import CliRunner, Result
from conftest import CollectorProc, run_producer, wait_for

from otel_telemetry.categories import CATEGORIES
from otel_telemetry.cli.commands import main
from otel_telemetry.store import db as dbmod
from otel_telemetry.store import purge as purge_lib
from otel_telemetry.store.rollups import HOUR_NS
from otel_telemetry.store.schema import COLUMNS
from otel_telemetry.store.writer import StoreWriter, WriteBatch

NS = 10**9
T0 = 1_800_000_000 * NS  # a whole second, in the past of no test clock (explicit --before only)
PURGED = "user_interaction"


def marker(category: str) -> str:
    return f"MARK{category.upper()}Q7"


def make_row(n: int, ts: int, category: str) -> tuple[Any, ...]:
    m = marker(category)
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(uid=n.to_bytes(16, "big"), timestamp=ts, type="span", category=category,
                  component=f"{m}-comp", service=f"{m}-svc", event="ev", name=f"{m}-name", level="info",
                  session_id=f"{m}-sess-{n}", status_message=f"{m} failed for {m}@example.com",
                  duration_ms=float(n % 50), data=f'{{"prompt": "{m} {"x" * (n % 300)}"}}',
                  metadata=f'{{"m": "{m}"}}')
    return tuple(values[c] for c in COLUMNS)


def rows_for(categories: tuple[str, ...], per: int, start_ts: int, step: int = NS) -> list[tuple[Any, ...]]:
    out = []
    n = 0
    for c in categories:
        for i in range(per):
            n += 1
            out.append(make_row(n, start_ts + i * step, c))
    return out


def write(path: Path, rows: list[tuple[Any, ...]]) -> StoreWriter:
    """A started store writer (the collector's) holding ``rows``; caller shuts it down."""
    w = StoreWriter(str(path), flush_interval=0.01, checkpoint_interval=3600)
    w.start()
    for i in range(0, len(rows), 500):
        assert w.submit(WriteBatch(rows[i:i + 500], received=len(rows[i:i + 500])), 10)
    wait_for(lambda: w.stats()["stored"] + w.stats()["duplicates"] >= len(rows), what="rows stored")
    return w


def raw(path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def q(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = dbmod.open_reader(str(path))
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def counts(path: Path) -> dict[str, int]:
    return dict(q(path, "SELECT category, count(*) FROM records GROUP BY category"))  # type: ignore[arg-type]


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("OTEL_TELEMETRY_DB", "OTEL_TELEMETRY_CONFIG", dbmod.KEY_ENV, dbmod.KEY_FILE_ENV):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Path, StoreWriter]]:
    """600 rows of every category, written by a running store writer that keeps running."""
    path = tmp_path / "t.db"
    w = write(path, rows_for(CATEGORIES, 600, T0 - 7200 * NS, NS))
    yield path, w
    w.shutdown(10)


def test_category_purge_leaves_no_bytes_while_the_writer_runs(seeded: tuple[Path, StoreWriter]) -> None:
    path, w = seeded
    before = counts(path)
    gone = marker(PURGED).encode()
    assert gone in raw(path)  # the markers really are in the files to begin with
    r = cli("purge", "--category", PURGED, "--db", str(path), "--format", "json")
    assert r.exit_code == 0, r.stderr
    out = orjson.loads(r.stdout)
    assert out["deleted"] == {PURGED: 600} and out["total"] == 600 and out["wal_truncated"] is True
    assert out["rollup_rows"] > 0
    # The collector's writer is still running and keeps ingesting afterwards.
    assert w.submit(WriteBatch([make_row(99_999, T0, "ai_behavior")], received=1), 10)
    wait_for(lambda: counts(path).get("ai_behavior") == 601, what="ingest after purge")
    data = raw(path)
    assert gone not in data
    assert gone.lower() not in data and marker(PURGED).encode("utf-16-le") not in data
    after = counts(path)
    assert PURGED not in after
    assert {c: n for c, n in after.items()} == {c: n + (c == "ai_behavior") for c, n in before.items() if c != PURGED}
    for c in CATEGORIES:
        if c != PURGED:
            assert marker(c).encode() in data  # other categories' rows intact
    assert q(path, "PRAGMA integrity_check") == [("ok",)]
    assert q(path, "SELECT count(*) FROM rollup_hourly WHERE category = ?", (PURGED,)) == [(0,)]
    w.shutdown(10)
    assert gone not in raw(path)
    assert q(path, "PRAGMA integrity_check") == [("ok",)]


def test_time_purge_boundary_is_exact_and_rollups_follow(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    cut = T0 + 1800 * NS + 5  # mid-hour, not on a second: the partial buckets are rebuilt
    rows = [make_row(1, cut - 1, "ai_behavior"), make_row(2, cut, "ai_behavior"), make_row(3, cut + 1, "ai_behavior"),
            make_row(4, cut - 1, "error_patterns"), make_row(5, cut, "error_patterns"),
            make_row(6, cut - 3 * HOUR_NS, "error_patterns")]
    write(path, rows).shutdown(10)
    before_text = f"{cut // NS}.{cut % NS:09d}"
    r = cli("purge", "--before", before_text, "--db", str(path), "--dry-run", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert '"total":3' in r.stdout
    r = cli("purge", "--before", before_text, "--db", str(path), "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert '"total":3' in r.stdout
    left = q(path, "SELECT uid FROM records ORDER BY timestamp, uid")
    assert [int.from_bytes(u, "big") for (u,) in left] == [2, 5, 3]
    for table in ("rollup_hourly", "rollup_daily"):
        assert q(path, f"SELECT sum(count) FROM {table}") == [(3,)], table
    # by category and time together: only that category's old rows
    write(path, [make_row(7, cut - 10, "ai_behavior"), make_row(8, cut - 10, "system_performance")]).shutdown(10)
    r = cli("purge", "--category", "system_performance", "--before", before_text, "--db", str(path))
    assert r.exit_code == 0, r.stderr
    assert {int.from_bytes(u, "big") for (u,) in q(path, "SELECT uid FROM records")} == {2, 3, 5, 7}
    assert q(path, "PRAGMA integrity_check") == [("ok",)]


def test_older_than(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    now = time.time_ns()
    write(path, [make_row(1, now - 40 * 86400 * NS, "ai_behavior"), make_row(2, now - 20 * 86400 * NS, "ai_behavior")]
          ).shutdown(10)
    r = cli("purge", "--older-than", "30d", "--db", str(path))
    assert r.exit_code == 0, r.stderr
    assert [int.from_bytes(u, "big") for (u,) in q(path, "SELECT uid FROM records")] == [2]


def test_all_needs_confirmation(seeded: tuple[Path, StoreWriter]) -> None:
    path, w = seeded
    w.shutdown(10)
    r = cli("purge", "--all", "--db", str(path))  # no one to answer: aborted, nothing deleted
    assert r.exit_code == 1 and sum(counts(path).values()) == 600 * len(CATEGORIES)
    r = cli("purge", "--all", "--db", str(path), input="n\n")
    assert r.exit_code == 1 and sum(counts(path).values()) == 600 * len(CATEGORIES)
    r = cli("purge", "--all", "--db", str(path), input="y\n")
    assert r.exit_code == 0, r.stderr
    assert counts(path) == {}
    assert q(path, "SELECT count(*) FROM rollup_hourly") == [(0,)] == q(path, "SELECT count(*) FROM rollup_daily")
    data = raw(path)
    for c in CATEGORIES:
        assert marker(c).encode() not in data
    assert q(path, "PRAGMA integrity_check") == [("ok",)]
    assert Path(f"{path}-wal").stat().st_size == 0 if Path(f"{path}-wal").exists() else True


def test_all_with_yes(seeded: tuple[Path, StoreWriter]) -> None:
    path, _ = seeded
    r = cli("purge", "--all", "--yes", "--db", str(path))
    assert r.exit_code == 0, r.stderr
    assert "(total)" in r.stdout and str(600 * len(CATEGORIES)) in r.stdout
    assert counts(path) == {}
    assert all(marker(c).encode() not in raw(path) for c in CATEGORIES)


def _digest(path: Path) -> str:
    """Database and WAL bytes (the -shm index is rewritten by any reader)."""
    wal = Path(f"{path}-wal")
    return hashlib.sha256(path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")).hexdigest()


def test_dry_run_changes_nothing(seeded: tuple[Path, StoreWriter]) -> None:
    path, w = seeded
    w.shutdown(10)
    digest, before = _digest(path), counts(path)
    for args in (["--category", PURGED], ["--all"], ["--before", str(T0 // NS)], ["--older-than", "1d"]):
        r = cli("purge", *args, "--dry-run", "--db", str(path), "--format", "json")
        assert r.exit_code == 0, r.stderr
    r = cli("purge", "--category", PURGED, "--category", "ai_behavior", "--dry-run", "--db", str(path))
    assert r.exit_code == 0 and "would_delete" in r.stdout and "1200" in r.stdout
    assert counts(path) == before and _digest(path) == digest


@pytest.mark.parametrize("args", [
    [],
    ["--all", "--category", "ai_behavior"],
    ["--all", "--before", "1d"],
    ["--before", "1d", "--older-than", "2d"],
    ["--category", "nope"],
    ["--older-than", "soon"],
    ["--before", "yesterday-ish"],
    ["--older-than", "-5d"],
    ["--before", "99999999999999999999"],
    ["--bogus"],
])
def test_bad_arguments_exit_2_with_one_line(seeded: tuple[Path, StoreWriter], args: list[str]) -> None:
    path, _ = seeded
    before = counts(path)
    r = cli("purge", *args, "--db", str(path))
    assert r.exit_code == 2, (args, r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("Error:"), r.stderr
    assert counts(path) == before


def test_missing_database_is_a_usage_error(tmp_path: Path) -> None:
    r = cli("purge", "--all", "--yes", "--db", str(tmp_path / "none.db"))
    assert r.exit_code == 2 and not (tmp_path / "none.db").exists()


def test_library_batches_and_spec_validation(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    write(path, rows_for(("ai_behavior", "error_patterns"), 120, T0)).shutdown(10)
    conn = dbmod.open_admin(str(path))
    try:
        spec = purge_lib.PurgeSpec(("ai_behavior",))
        assert purge_lib.count(conn, spec)["ai_behavior"] == 120
        done = purge_lib.purge(conn, spec, batch_rows=7)
        assert done["deleted"]["ai_behavior"] == 120 and done["wal_truncated"]
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        conn.close()
    for bad in (dict(), dict(categories=("x",)), dict(everything=True, categories=("ai_behavior",))):
        with pytest.raises(ValueError):
            purge_lib.PurgeSpec(**bad)  # type: ignore[arg-type]


def test_purge_of_an_encrypted_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dbmod.KEY_ENV, "k3y")
    path = tmp_path / "t.db"
    write(path, rows_for(("ai_behavior", PURGED), 50, T0)).shutdown(10)
    r = cli("purge", "--category", PURGED, "--db", str(path))
    assert r.exit_code == 0, r.stderr
    assert counts(path) == {"ai_behavior": 50}
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA key='k3y'")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_purge_beside_a_real_collector_process(tmp_path: Path) -> None:
    """A collector process keeps running and ingesting while ``purge`` (its own process) scrubs
    one category: the producer's HTTP-server spans (user_interaction, named "GET /items")."""
    c = CollectorProc(tmp_path).start()
    try:
        run_producer(c.endpoint, "--spans", "300")
        wait_for(lambda: PURGED in c.counts_by_category(), what="user_interaction rows")
        assert b"GET /items" in raw(Path(c.db))
        p = subprocess.run([sys.executable, "-m", "otel_telemetry", "purge", "--category", PURGED, "--db", c.db,
                            "--format", "json"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        out = orjson.loads(p.stdout)
        assert out["deleted"][PURGED] > 0 and out["wal_truncated"] is True
        assert PURGED not in c.counts_by_category()
        assert b"GET /items" not in raw(Path(c.db))
        before = sum(c.counts_by_category().values())
        run_producer(c.endpoint, "--spans", "60")  # the collector still ingests
        wait_for(lambda: sum(c.counts_by_category().values()) > before, what="ingest after purge")
    finally:
        assert c.stop() == 0
    assert c.rows("PRAGMA integrity_check") == [("ok",)]
