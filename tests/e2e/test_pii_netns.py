"""The PII corpus over a network: an app in one network namespace sends over ZeroMQ tcp:// with
CURVE to a collector in another (a veth pair between them, both made and removed by this test).

The endpoint leaves the app's device, so the app redacts before sending (``counters()["redaction"]
== "app"``); the collector, which redacts only frames an app flags, redacts nothing itself, and
still no planted value reaches its database or WAL. The ipc:// path of the same corpus (the
collector redacts) is ``test_pii_e2e.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import HERE, wait_for
from test_pii_e2e import KEY, _read, assert_no_pii

from otel_telemetry.cli.commands import main

COLLECTOR_IP, APP_IP, PORT = "10.213.7.1", "10.213.7.2", 5555


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("network namespaces need root and iproute2 (ip); CI has both")
        pytest.skip("network namespaces need root and iproute2 (ip)")
    tag = f"{os.getpid() % 100000}"
    app, col = f"otapp{tag}", f"otcol{tag}"
    made: list[str] = []
    try:
        for ns in (app, col):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vc{tag}")
        _ip("link", "set", f"va{tag}", "netns", app)
        _ip("link", "set", f"vc{tag}", "netns", col)
        for ns, dev, addr in ((app, f"va{tag}", APP_IP), (col, f"vc{tag}", COLLECTOR_IP)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield app, col
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _scrubbed(path: Path) -> bytes:
    """The file's bytes without the collector's own bind address: the status row names its
    endpoint, which is configuration, not telemetry (every planted address must still be absent)."""
    return _read(path).replace(COLLECTOR_IP.encode(), b"")


def _keys(d: Path, name: str) -> tuple[Path, Path]:
    res = CliRunner().invoke(main, ["keys", "generate", "--dir", str(d), "--name", name])
    assert res.exit_code == 0, res.output
    return d / f"{name}.key", d / f"{name}.key_secret"


def test_pii_corpus_over_a_network_is_redacted_in_the_app(namespaces: tuple[str, str], tmp_path: Path) -> None:
    app_ns, col_ns = namespaces
    server_pub, server_secret = _keys(tmp_path / "server", "collector")
    _, client_secret = _keys(tmp_path / "allowed", "app")
    db, log = tmp_path / "c.db", tmp_path / "c.log"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "store": {"flush_interval": 0.05}, "retention": {"interval": 3600}, "redaction": {"key_env": "PII_KEY"},
        "receivers": {"zmq": {"curve": {"secret_key_file": str(server_secret),
                                        "allowed_clients_dir": str(tmp_path / "allowed")}},
                      "otlp_grpc": {"endpoint": "127.0.0.1:0"}, "otlp_http": {"endpoint": "127.0.0.1:0"}},
    }))
    endpoint = f"tcp://{COLLECTOR_IP}:{PORT}"
    env = dict(os.environ, PII_KEY=KEY, OTEL_TELEMETRY_REDACT_KEY=KEY)
    collector = subprocess.Popen(
        ["ip", "netns", "exec", col_ns, sys.executable, "-m", "otel_telemetry", "collector", "run",
         "--config", str(cfg), "--db", str(db), "--endpoint", endpoint],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"), env=env)
    try:
        wait_for(lambda: "listening on" in log.read_text() or collector.poll() is not None, what="collector bind")
        assert collector.poll() is None, log.read_text()
        app = subprocess.run(
            ["ip", "netns", "exec", app_ns, sys.executable, str(HERE / "pii_corpus.py"), "--endpoint", endpoint,
             "--service", "pii-netns"],
            capture_output=True, timeout=120,
            env=dict(env, OTEL_TELEMETRY_CURVE_SERVER_KEY=str(server_pub),
                     OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(client_secret)))
        assert app.returncode == 0, app.stderr.decode()
        out = json.loads(app.stdout.decode().strip().splitlines()[-1])
        counters = out["counters"]
        assert out["shutdown_ok"] and counters["dropped"] == {}, counters
        assert counters["redaction"] == "app"
        assert counters["redacted"]["email"] > 0 and counters["redacted"]["pseudonym"] > 0
        planted = out["planted"]
        total = planted["spans"] + planted["logs"] + planted["metric_points"]
        assert counters["sent"] == total

        def stored() -> int:
            import apsw

            conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                return conn.execute("SELECT count(*) FROM records").fetchall()[0][0]
            finally:
                conn.close()

        wait_for(lambda: stored() == total, timeout=60, what=f"{total} records stored")
        assert_no_pii("database file (running)", _scrubbed(db))
        assert_no_pii("WAL (running)", _scrubbed(Path(f"{db}-wal")))
    finally:
        if collector.poll() is None:
            collector.terminate()
        assert collector.wait(30) == 0, log.read_text()[-2000:]
    assert_no_pii("database file (after exit)", _scrubbed(db))
    import apsw

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    status = json.loads(conn.execute("SELECT body FROM collector_status WHERE id = 1").fetchall()[0][0])
    conn.close()
    # Nothing arrived flagged for the collector to redact: every record was redacted in the app.
    assert status["redaction"]["records"] == 0 and status["redaction"]["redacted"] == {}
    assert status["zmq"]["received"] == total and status["zmq"]["rejected"] == {}
