"""The store file is checked before it is used (issue 15 item 15), with real processes and files.

- a file whose pages were overwritten: the collector refused nothing, said "running" and dropped
  every row; now it exits 2 with one line (``PRAGMA quick_check`` at start);
- a FIFO as ``--db`` blocked ``open()`` forever, deaf to SIGTERM: refused by ``stat`` first;
- a read-only file system (a read-only bind mount in a mount namespace of its own, made with
  ``unshare``): the collector names it; the CLI reads a WAL database there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
import yaml
from conftest import CollectorProc
from test_store_faults import _damage_records, _spans, http_port, post

from otel_telemetry.store import preflight

CLI = [sys.executable, "-m", "otel_telemetry"]


def _run(args: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    # The timeout is a safety net (a FIFO used to block forever), not a measurement.
    return subprocess.run([*(prefix or []), *CLI, *args], capture_output=True, text=True, timeout=120)


def _collector_run(tmp: Path, db: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({"receivers": {"otlp_http": {"endpoint": "127.0.0.1:0"},
                                                 "otlp_grpc": {"endpoint": "127.0.0.1:0"}}}))
    return _run(["collector", "run", "--config", str(cfg), "--db", db, "--endpoint", f"ipc://{tmp}/run.ipc"],
                prefix)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _stored_db(tmp: Path, n: int = 300) -> CollectorProc:
    c = CollectorProc(tmp)
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "alerts": {"default_rules": False}}))
    c.start()
    assert post(http_port(c), _spans(n)) == 200
    assert c.stop() == 0
    return c


def test_damaged_file_is_refused_at_start(tmp_path: Path) -> None:
    c = _stored_db(tmp_path)
    assert _damage_records(c.db) > 0
    out = _collector_run(tmp_path, c.db)
    assert out.returncode == 2, out.stderr
    line = _one_line(out.stderr)
    assert line.startswith(f"otel-telemetry: {c.db} is damaged (") and "move it aside" in line, line
    # Not a database at all (a file of random bytes).
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(64 * 1024))
    junk.chmod(0o600)  # (else one more line: the collector makes it private)
    out = _collector_run(tmp_path, str(junk))
    assert out.returncode == 2 and "junk.db" in _one_line(out.stderr), out.stderr


def test_quick_check_stops_at_its_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "big.db")
    conn = apsw.Connection(path)
    conn.execute("CREATE TABLE t(x, y); CREATE INDEX ty ON t(y)")
    with conn:
        conn.executemany("INSERT INTO t VALUES (?, ?)", ((os.urandom(100), os.urandom(20)) for _ in range(100_000)))
    assert preflight.quick_check(conn, path, 1e-6) is False  # cut short: not a verdict
    assert preflight.quick_check(conn, path, 600) is True
    conn.close()


def test_fifo_as_db_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    out = _collector_run(tmp_path, str(fifo))
    assert out.returncode == 2, out.stderr
    assert _one_line(out.stderr) == (f"otel-telemetry: {fifo} is a FIFO, not a database file: give --db a "
                                     "regular file (or a path where one can be created)")
    for args in (["query", "--last", "1h"], ["status"], ["retention", "set", "--type", "span", "--days", "3"]):
        out = _run([*args, "--db", str(fifo)])
        assert out.returncode != 0 and "is a FIFO" in _one_line(out.stderr), (args, out.stderr)


def _ro(mount: Path) -> list[str]:
    """A command prefix that runs in a mount namespace of its own where ``mount`` is read-only."""
    script = f'mount --bind "{mount}" "{mount}" && mount -o remount,bind,ro "{mount}" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "ro"]


def _can_mount_ro(tmp: Path) -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run([*_ro(tmp), "sh", "-c", f'! touch "{tmp}/probe" 2>/dev/null'], capture_output=True,
                           text=True, timeout=60)
    return None if probe.returncode == 0 else f"cannot make a read-only bind mount: {probe.stderr.strip()}"


def test_read_only_file_system(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    reason = _can_mount_ro(media)
    if reason is not None:
        pytest.skip(reason)
    c = _stored_db(media, n=50)  # closed cleanly: no -wal, no -shm beside it
    assert not os.path.exists(c.db + "-wal")
    ro = _ro(media)
    out = _collector_run(tmp_path, c.db, ro)
    assert out.returncode == 2, out.stderr
    assert "is on a read-only file system" in _one_line(out.stderr), out.stderr
    out = _run(["query", "--db", c.db, "--last", "1h", "--limit", "1000", "--format", "json"], ro)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 50
    out = _run(["retention", "set", "--type", "span", "--days", "3", "--db", c.db], ro)
    assert out.returncode != 0 and "is on a read-only file system" in _one_line(out.stderr), out.stderr

    # Copied off a live system: the -wal holds committed rows the main file does not.
    conn = apsw.Connection(c.db)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("DELETE FROM records WHERE rowid IN (SELECT rowid FROM records LIMIT 20)")
    held = {suffix: (media / f"held{suffix}").write_bytes(Path(c.db + suffix).read_bytes())
            for suffix in ("", "-wal", "-shm")}
    conn.close()  # checkpoints and deletes the -wal/-shm; put the three back as a copy has them
    for suffix in held:
        Path(c.db + suffix).write_bytes((media / f"held{suffix}").read_bytes())
    out = _run(["query", "--db", c.db, "--last", "1h", "--limit", "1000", "--format", "json"], ro)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 30
    os.unlink(c.db + "-shm")  # a -wal without its -shm cannot be read there: say so
    out = _run(["query", "--db", c.db, "--last", "1h", "--format", "json"], ro)
    assert out.returncode == 1 and "copy the file and its -wal to writable storage" in _one_line(out.stderr), \
        out.stderr
