"""Issue 15 item 5 (AICO 002 "role-based access", "audit logging of all telemetry data access"):
viewer and admin dashboard tokens, and the audit log written by the CLI (separate processes) and
the dashboard (a real server on 127.0.0.1) beside a real database file."""

from __future__ import annotations

import getpass
import http.client
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from dashboard_seed import seed_db

from otel_telemetry.dashboard.server import Dashboard
from otel_telemetry.store import audit

ADMIN, VIEWER = "admin-token-0123456789abcdef", "viewer-token-0123456789abcdef"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_telemetry", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def _req(dash: Dashboard, path: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
    headers = {"Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = orjson.dumps(body), "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return r.status, orjson.loads(raw) if r.getheader("Content-Type", "").startswith("application/json") else raw
    finally:
        conn.close()


@pytest.fixture()
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "t.db")
    seed_db(path)
    return path


def test_viewer_reads_admin_writes_and_every_call_is_audited(db: str) -> None:
    with pytest.raises(ValueError):
        Dashboard(db, ADMIN, "127.0.0.1", 0, viewer_token=ADMIN)  # one token cannot be both
    dash = Dashboard(db, ADMIN, "127.0.0.1", 0, viewer_token=VIEWER)
    dash.start()
    try:
        status, found = _req(dash, "/api/traces?limit=5&last=30d", VIEWER)
        assert status == 200 and _req(dash, "/api/csrf", VIEWER)[1]["role"] == "viewer"
        change = {"category": "ai_research", "days": 400, "confirm": "ai_research"}
        status, body = _req(dash, "/api/retention", VIEWER, "POST", change)
        assert status == 403 and "admin" in body["error"]
        assert _req(dash, "/api/retention", ADMIN, "POST", change)[0] == 200
        assert _req(dash, "/api/traces", "wrong-token-0123456789abcdef")[0] == 401
    finally:
        dash.shutdown()
    entries = audit.read(audit.path_for(db))
    by = [(e["who"], e["what"], e["outcome"]) for e in entries]
    assert ("dashboard:viewer", "GET /api/traces", "ok") in by
    assert ("dashboard:viewer", "POST /api/retention", "refused: viewer") in by
    assert ("dashboard:admin", "POST /api/retention", "ok") in by
    rec = next(e for e in entries if e["what"] == "GET /api/traces")
    listed = found["spans"]
    assert rec["params"] == {"limit": "5", "last": "30d"} and rec["rows"] == len(listed) > 0
    assert ADMIN not in Path(audit.path_for(db)).read_text() and VIEWER not in Path(audit.path_for(db)).read_text()


def test_cli_reads_exports_and_purges_are_audited_and_survive_the_purge(db: str, tmp_path: Path) -> None:
    assert _cli("query", "--db", db, "--last", "30d", "--category", "ai_behavior", "--format", "json").returncode == 0
    assert _cli("stats", "--db", db, "--last", "30d").returncode == 0
    assert _cli("export", "--db", db, "--last", "30d", "-o", str(tmp_path / "out.jsonl")).returncode == 0
    assert _cli("purge", "--db", db, "--all", "--yes").returncode == 0
    log = audit.path_for(db)
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    r = _cli("audit", "--db", db, "--format", "json")
    assert r.returncode == 0, r.stderr
    entries = orjson.loads(r.stdout)
    whats = [e["what"] for e in entries]
    assert whats[:4] == ["query", "stats", "export", "purge"]  # the purge did not erase them
    me = getpass.getuser()
    assert all(e["who"] == me for e in entries)
    query = entries[0]
    assert query["params"]["category"] == "ai_behavior" and query["rows"] > 0
    assert entries[3]["rows"] > 0  # rows the purge deleted
    # Purging the log is itself an entry.
    assert "removed 4" in _cli("audit", "purge", "--db", db, "--all", "--yes").stdout
    left = audit.read(log)
    assert [e["what"] for e in left] == ["audit purge"] and left[0]["rows"] == 4


def test_the_log_is_bounded_oldest_first_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TELEMETRY_AUDIT_MAX_MB", "0.01")  # ~10 KB
    log = tmp_path / "a.audit.jsonl"
    for i in range(400):
        audit.append(log, "tester", "query", {"i": i}, i, now_ns=1_800_000_000_000_000_000 + i)
    assert log.stat().st_size <= 0.01 * 1024 * 1024
    kept = audit.read(log)
    assert kept[-1]["params"] == {"i": 399} and kept[0]["params"]["i"] > 0
    assert [e["params"]["i"] for e in kept] == list(range(kept[0]["params"]["i"], 400))
    # A torn line (a process killed mid-write) is skipped, not fatal.
    with open(log, "ab") as f:
        f.write(b'{"ts": 1, "wha')
    assert audit.read(log)[-1]["params"] == {"i": 399}
