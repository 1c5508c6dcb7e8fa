"""Encryption at rest (SQLite3 Multiple Ciphers via apsw-sqlite3mc): real files, real collector."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
from click.testing import CliRunner
from conftest import CollectorProc, run_producer, wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.collector.config import ConfigError, load
from otel_telemetry.collector.forward.queue import DiskQueue, Request
from otel_telemetry.store import db as dbmod
from otel_telemetry.store import schema
from otel_telemetry.store.alert_state import open_state as _open_state

KEY = "correct horse battery staple"
MARKER = b"ENCMARKER-7f3a9c"
PLAIN = b"SQLite format 3\x00"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> Any:
    for var in ("OTEL_TELEMETRY_DB", "OTEL_TELEMETRY_CONFIG", dbmod.KEY_ENV, dbmod.KEY_FILE_ENV):
        monkeypatch.delenv(var, raising=False)
    dbmod.set_key_file(None)
    yield
    dbmod.set_key_file(None)


def _raw(path: str | Path) -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def _seed(path: Path, n: int = 50) -> None:
    conn = dbmod.open_writer(str(path))
    cols = ", ".join(schema.COLUMNS)
    rows = []
    for i in range(n):
        values: dict[str, Any] = dict.fromkeys(schema.COLUMNS)
        values.update(uid=i.to_bytes(16, "big"), timestamp=time.time_ns() - i, type="span",
                      category="ai_behavior", component="llm", event="chat", level="info",
                      name=MARKER.decode(), data=f'{{"m": "{MARKER.decode()}"}}', metadata="{}")
        rows.append(tuple(values[c] for c in schema.COLUMNS))
    with conn:
        conn.executemany(f"INSERT INTO records({cols}) VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_the_installed_sqlite_has_the_cipher() -> None:
    """apsw-sqlite3mc, not plain apsw (which would ignore PRAGMA key and write plaintext; store/db.py
    refuses a key then)."""
    assert dbmod.has_cipher()
    conn = apsw.Connection(":memory:")
    assert conn.execute("SELECT sqlite3mc_version()").fetchone()[0].startswith("SQLite3 Multiple Ciphers")
    conn.close()


def test_default_is_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    _seed(path)
    assert path.read_bytes()[:16] == PLAIN
    assert MARKER in _raw(path)


def test_encrypted_file_and_wal_hold_no_plaintext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dbmod.KEY_ENV, KEY)
    path = tmp_path / "enc.db"
    _seed(path)
    reader = dbmod.open_reader(str(path))  # keeps the WAL around while we look at the bytes
    assert reader.execute("SELECT count(*) FROM records WHERE name = ?", (MARKER.decode(),)).fetchone()[0] == 50
    raw = _raw(path)
    reader.close()
    assert path.read_bytes()[:16] != PLAIN
    assert MARKER not in raw and b"ai_behavior" not in raw and b"CREATE TABLE" not in raw
    # The same key in a key file (0600) opens it too; it is also what sqlite3mc's shell takes.
    monkeypatch.delenv(dbmod.KEY_ENV)
    key_file = tmp_path / "db.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv(dbmod.KEY_FILE_ENV, str(key_file))
    conn = dbmod.open_reader(str(path))
    assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 50
    conn.close()
    plain = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    plain.execute(f"PRAGMA key='{KEY}'")
    assert plain.execute("SELECT count(*) FROM records").fetchone()[0] == 50
    plain.close()


@pytest.mark.parametrize("case", ["missing", "wrong"])
def test_cli_without_or_with_wrong_key_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   case: str) -> None:
    path = tmp_path / "enc.db"
    monkeypatch.setenv(dbmod.KEY_ENV, KEY)
    _seed(path)
    _open_state(f"{path}.alerts.db").close()
    if case == "missing":
        monkeypatch.delenv(dbmod.KEY_ENV)
    else:
        monkeypatch.setenv(dbmod.KEY_ENV, "not the key")
    for args in (["query", "--db", str(path)], ["stats", "--db", str(path)], ["status", "--db", str(path)],
                 ["retention", "purge", "--db", str(path)], ["purge", "--all", "--yes", "--db", str(path)],
                 ["export", "-o", "-", "--db", str(path)], ["alerts", "list", "--db", str(path)]):
        r = _cli(*args)
        assert r.exit_code == 1, (args, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "is encrypted" in lines[0], (args, r.stderr)
        assert ("set OTEL_TELEMETRY_DB_KEY" in lines[0]) == (case == "missing")
        assert r.exception is None or isinstance(r.exception, SystemExit)
    with pytest.raises(dbmod.DatabaseKeyError):
        dbmod.open_reader(str(path))


def test_cli_with_key_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "enc.db"
    monkeypatch.setenv(dbmod.KEY_ENV, KEY)
    _seed(path, 5)
    r = _cli("query", "--db", str(path), "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count(MARKER.decode()) >= 5


def test_plain_file_with_a_key_set_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.db"
    _seed(path)
    monkeypatch.setenv(dbmod.KEY_ENV, KEY)
    r = _cli("query", "--db", str(path))
    assert r.exit_code == 1 and "is not encrypted but a key is set" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    key_file = tmp_path / "db.key"
    key_file.write_text(KEY)
    key_file.chmod(mode)
    monkeypatch.setenv(dbmod.KEY_FILE_ENV, str(key_file))
    _seed_path = tmp_path / "x.db"
    with pytest.raises(dbmod.DatabaseKeyError, match="chmod 600"):
        dbmod.open_writer(str(_seed_path))
    assert not _seed_path.exists()
    r = _cli("status", "--db", str(tmp_path / "x.db"))
    assert r.exit_code == 2  # no database: checked before the key
    _seed_path.write_bytes(b"")
    r = _cli("status", "--db", str(_seed_path))
    assert r.exit_code == 1 and "chmod 600" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_config_key_file_option(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("store:\n  key_file: ~/db.key\n")
    assert load(str(cfg)).store.key_file == os.path.expanduser("~/db.key")
    cfg.write_text("store:\n  key_file: 12\n")
    with pytest.raises(ConfigError, match="store.key_file"):
        load(str(cfg))


def test_side_files_are_encrypted_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alert state (<db>.alerts.db) and the forwarder's disk queue are keyed like the store."""
    monkeypatch.setenv(dbmod.KEY_ENV, KEY)
    state = _open_state(str(tmp_path / "t.db.alerts.db"))
    state.execute("INSERT INTO alert_state(rule, state, updated) VALUES (?, 'ok', 1)", (MARKER.decode(),))
    q = DiskQueue(str(tmp_path / "queue"))
    q.put([Request("span", MARKER * 4, 1, 1)])
    raw = _raw(tmp_path / "t.db.alerts.db") + _raw(q.path)
    assert MARKER not in raw
    assert q.peek() is not None and q.peek().body == MARKER * 4  # type: ignore[union-attr]
    q.close()
    state.close()
    monkeypatch.delenv(dbmod.KEY_ENV)
    with pytest.raises(dbmod.DatabaseKeyError):
        _open_state(str(tmp_path / "t.db.alerts.db"))
    with pytest.raises(dbmod.DatabaseKeyError):
        DiskQueue(str(tmp_path / "queue"))
    DiskQueue(str(tmp_path / "queue2")).close()  # the lock was released after the refused open


def test_collector_writes_encrypted_with_config_key_file(tmp_path: Path) -> None:
    """A real collector process with ``store.key_file`` stores producer spans encrypted; without
    the key the collector refuses the file with one line and no traceback."""
    key_file = tmp_path / "db.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    c = CollectorProc(tmp_path)
    c.config.write_text(f"store:\n  flush_interval: 0.05\n  key_file: {key_file}\nretention:\n  interval: 3600\n")
    env_before = os.environ.pop(dbmod.KEY_ENV, None)
    assert env_before is None
    c.start()
    try:
        result = run_producer(c.endpoint, "--spans", "60")
        assert isinstance(result, dict)
        os.environ[dbmod.KEY_FILE_ENV] = str(key_file)
        try:
            wait_for(lambda: sum(dict(_rows(c.db, "SELECT category, count(*) FROM records GROUP BY category"))
                                 .values()) > 0, what="rows stored")
        finally:
            os.environ.pop(dbmod.KEY_FILE_ENV)
    finally:
        assert c.stop() == 0
    assert Path(c.db).read_bytes()[:16] != PLAIN
    assert b"component_interactions" not in _raw(c.db)
    # Same database, no key: the collector exits at once with one line.
    c.config.write_text("store:\n  flush_interval: 0.05\n")
    p = subprocess.run([sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(c.config),
                        "--db", c.db, "--endpoint", f"ipc://{tmp_path}/c2.ipc"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "encrypted" in ln]
    assert len(lines) == 1 and "set OTEL_TELEMETRY_DB_KEY" in lines[0], p.stderr
    # A world-readable key file: refused before anything opens the database.
    key_file.chmod(0o644)
    c.config.write_text(f"store:\n  key_file: {key_file}\n")
    p = subprocess.run([sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(c.config),
                        "--db", c.db, "--endpoint", f"ipc://{tmp_path}/c3.ipc"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "chmod 600" in p.stderr, p.stderr


def _rows(path: str, sql: str) -> list[tuple[Any, ...]]:
    conn = dbmod.open_reader(path)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()
