"""The store writer's faults in a real collector process (issue 15 items 12 and 18).

Item 12: a retention of 99,999,999,999 days once overflowed the int64 cutoff and killed the writer
thread; the collector ran on answering 429 forever and logged ``clean=True``. Now the range is
checked wherever days come in (CLI, collector.yaml, dashboard API), a value put straight into the
table is ignored, and a writer that stops for good (here: the file damaged under it) makes the
collector exit non-zero with one line saying why.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import yaml
from click.testing import CliRunner
from conftest import CollectorProc, wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.collector.config import ConfigError, load
from otel_telemetry.dashboard.params import ApiError
from otel_telemetry.dashboard.records_api import set_retention
from otel_telemetry.store import retention as ret

HUGE = 99_999_999_999


def _spans(n: int, base: int = 0) -> dict[str, Any]:
    now = time.time_ns()
    spans = [{"traceId": f"{base + i + 1:032x}", "spanId": f"{base + i + 1:016x}", "name": f"op{i}", "kind": 1,
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 10**6)} for i in range(n)]
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}


def post(port: int, body: dict[str, Any], path: str = "/v1/traces") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def http_port(c: CollectorProc) -> int:
    wait_for(lambda: "otlp_http" in c.status(), what="the OTLP port in the status row")
    return int(c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])


def stored(c: CollectorProc) -> int:
    return int(c.rows("SELECT count(*) FROM records")[0][0])


def test_huge_retention_is_refused_everywhere(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    runner = CliRunner()
    for args in (["retention", "set", "--category", "ai_research", "--days", str(HUGE)],
                 ["retention", "--set", "--category", "ai_research", "--days", str(HUGE)]):
        out = runner.invoke(main, [*args, "--db", db])
        assert out.exit_code == 2, out.output
        assert f"1<=x<={ret.MAX_DAYS}" in out.output and "Traceback" not in out.output, out.output
    with pytest.raises(ValueError, match="from 1 to"):
        ret.set_days(apsw.Connection(":memory:"), "ai_research", ret.MAX_DAYS + 1)
    with pytest.raises(ApiError, match=f"from 1 to {ret.MAX_DAYS}"):
        set_retention({"category": "ai_research", "days": HUGE, "confirm": "ai_research"}, None)  # type: ignore[arg-type]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"retention": {"days": {"ai_research.span": HUGE}}}))
    with pytest.raises(ConfigError, match=r"retention.days.ai_research.span: must be at most 100000"):
        load(str(cfg))
    # The collector itself: one line, exit 2, before anything starts.
    proc = subprocess.run([sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(cfg),
                           "--db", db, "--endpoint", f"ipc://{tmp_path}/x.ipc"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "at most 100000" in proc.stderr, proc.stderr


def test_value_put_straight_into_the_table_does_not_kill_the_writer(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path)
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 0.05},
                                        "alerts": {"default_rules": False}}))
    c.start()
    try:
        port = http_port(c)
        assert post(port, _spans(3)) == 200
        conn = apsw.Connection(c.db)
        conn.set_busy_timeout(5000)
        conn.execute("INSERT OR REPLACE INTO retention(category, days) VALUES ('ai_research', ?)", (HUGE,))
        conn.close()
        runs = c.status()["retention_runs"]
        wait_for(lambda: c.status()["retention_runs"] > runs + 2, what="retention runs over the bad row")
        assert post(port, _spans(3, base=100)) == 200
        assert stored(c) == 6 and c.proc is not None and c.proc.poll() is None
        shown = CliRunner().invoke(main, ["retention", "show", "--db", c.db, "--format", "json"])
        assert shown.exit_code == 0, shown.output
        assert {r["days"] for r in json.loads(shown.output) if r["category"] == "ai_research"} <= {30, 365}
    finally:
        assert c.stop() == 0, c.log.read_text()[-3000:]


def _damage_records(db: str) -> int:
    """Overwrite every page of the records table and its indexes with garbage, in the file itself."""
    conn = apsw.Connection(db, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'records' OR name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = 'records' AND type = 'index')")]
    finally:
        conn.close()
    with open(db, "r+b") as f:
        for p in pages:
            f.seek((p - 1) * page_size)
            f.write(os.urandom(page_size))
    return len(pages)


def test_writer_that_stops_for_good_stops_the_collector(tmp_path: Path) -> None:
    """The file damaged under a running collector: it used to drop every batch (a traceback each)
    and run on; now the writer stops, the collector logs why in one line and exits 1."""
    c = CollectorProc(tmp_path)
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
                                        "alerts": {"default_rules": False}}))
    c.start()
    port = http_port(c)
    assert post(port, _spans(200)) == 200
    assert c.stop() == 0  # a TRUNCATE checkpoint: every row now lives in the main file
    c.start()
    port = http_port(c)
    assert _damage_records(c.db) > 0
    # Another connection's commit makes the writer drop its page cache and read the damaged pages.
    out = CliRunner().invoke(main, ["retention", "set", "--category", "ai_research", "--days", "400", "--db", c.db])
    assert out.exit_code == 0, out.output
    with contextlib.suppress(OSError):  # its batch cannot be stored: 503, or the collector is gone first
        post(port, _spans(5, base=1000))
    assert c.proc is not None
    rc = c.proc.wait(60)
    c.proc = None
    log = c.log.read_text()
    assert rc == 1, log[-3000:]
    assert log.count("the database is damaged") == 1, log[-3000:]  # one line says why
    assert "clean=False" in log
