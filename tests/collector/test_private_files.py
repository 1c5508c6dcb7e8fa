"""Issue 15 item 3: the collector's telemetry files are readable by their owner only, and files an
older version left readable by others are tightened at start-up, with a log line. Real collector
process, real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml
from conftest import CollectorProc, run_producer, wait_for


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_private_and_old_ones_are_tightened(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    data = tmp_path / "new-dir"  # the collector creates it
    c.db = str(data / "telemetry.db")
    queue = tmp_path / "fwd-queue"
    c.config.write_text(yaml.safe_dump({
        "store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
        "alerts": {"interval": 0.2, "default_rules": False,
                   "rules": [{"name": "errors", "kind": "frequency", "filter": {"level": "error"},
                              "window": "10m", "op": ">", "threshold": 1_000_000}]},
        "forward": [{"endpoint": "http://127.0.0.1:9", "protocol": "http/protobuf", "queue_dir": str(queue)}],
    }))
    c.start()
    run_producer(c.endpoint, "--spans", "60")
    wait_for(lambda: sum(c.counts_by_category().values()) >= 61, what="records stored")
    wait_for(lambda: Path(c.db + ".alerts.db").exists() and any(queue.iterdir()), what="alert state and queue")
    files = [Path(c.db), Path(c.db + "-wal"), Path(c.db + "-shm"), Path(c.db + ".alerts.db"),
             *[p for p in queue.iterdir() if p.is_file()]]
    for f in files:
        assert _mode(f) & 0o077 == 0, (f, oct(_mode(f)))
    for d in (data, queue):
        assert _mode(d) == 0o700, (d, oct(_mode(d)))
    assert c.stop() == 0

    # As an older version left them: readable by everyone.
    for f in (Path(c.db), Path(c.db + ".alerts.db")):
        os.chmod(f, 0o644)
    c.start()
    try:
        for f in (Path(c.db), Path(c.db + ".alerts.db")):
            assert _mode(f) == 0o600, (f, oct(_mode(f)))
        log = c.log.read_text()
        assert "readable by their owner only" in log and str(c.db) in log
    finally:
        assert c.stop() == 0
