"""A full disk under a real collector process (issue 15 item 18), on a real small file system: a
tmpfs mounted with ``size=`` by this test (root only) and unmounted at the end.

Before: 607 tracebacks (389 KB) in 25 s, a stale status row, and ingest that did not resume when
less than the WAL's size was freed. Now: one log line when the disk fills and one when ingest
resumes, ``store_state: disk_full`` in ``status``, ingest pushes back (OTLP 429/503, the batch in
hand kept, never dropped), and once space returns everything the client sent is stored, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CollectorProc, wait_for
from test_store_faults import http_port, post

pytestmark = pytest.mark.heavy  # see tests/conftest.py: never next to another heavy test

MIB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mnt)], check=True, timeout=60)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=60)


def _batch(k: int, n: int = 100) -> dict[str, Any]:
    now = time.time_ns()
    # Incompressible attribute text: ~3 KB a span, so a few MB fill the disk.
    spans = [{"traceId": f"{k * n + i + 1:032x}", "spanId": f"{k * n + i + 1:016x}", "name": "op", "kind": 1,
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 10**6),
              "attributes": [{"key": "blob", "value": {"stringValue": os.urandom(1500).hex()}}]} for i in range(n)]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}


def _status_cli(db: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "otel_telemetry", "status", "--db", db, "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_full_disk_pushes_back_and_resumes(tmp_path: Path, small_fs: Path) -> None:
    c = CollectorProc(tmp_path)
    c.db = str(small_fs / "t.db")
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
                                        "alerts": {"default_rules": False}}))
    c.start()
    try:
        port = http_port(c)
        # Leave ~4 MB: the collector's file and WAL fill that in a few batches.
        ballast = small_fs / "ballast"
        ballast.write_bytes(b"\0" * max(0, _free(small_fs) - 4 * MIB))
        sent: dict[int, dict[str, Any]] = {}
        refused: list[int] = []
        k = 0
        while not refused:  # until the collector pushes back
            assert k < 200, "the disk never filled"
            sent[k] = _batch(k)
            if post(port, sent[k]) != 200:
                refused.append(k)
            k += 1
        wait_for(lambda: _status_cli(c.db).get("store_state") == "disk_full", what="disk_full in status")
        for j in range(k, k + 3):  # still pushing back, and still alive
            sent[j] = _batch(j)
            if post(port, sent[j]) != 200:
                refused.append(j)
        assert c.proc is not None and c.proc.poll() is None
        log = c.log.read_text()
        assert log.count("store disk full") == 1 and "Traceback" not in log, log[-3000:]

        ballast.unlink()  # space returns: ingest resumes by itself
        wait_for(lambda: _status_cli(c.db).get("store_state") == "running", what="ingest resumed", timeout=60)
        for j in refused:  # what was refused is sent again, as an OTLP client does
            wait_for(lambda j=j: post(port, sent[j]) == 200, what=f"batch {j} accepted", timeout=60)
        total = 100 * len(sent)
        wait_for(lambda: c.rows("SELECT count(*) FROM records")[0][0] == total, what="every span stored")
        log = c.log.read_text()
        assert log.count("store disk full") == 1 and log.count("ingest resumed") == 1, log[-3000:]
        assert "Traceback" not in log, log[-3000:]
        assert c.status()["dropped_rows"] == 0
    finally:
        rc = c.stop() if c.proc is not None else 0  # before the tmpfs goes
    assert rc == 0, c.log.read_text()[-3000:]
