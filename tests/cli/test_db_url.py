"""A URL is never taken for a file path: bad locations are one line and exit 2, nothing is created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for
from sqld import free_port


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TELEMETRY_")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "otel_telemetry", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=60)


def _one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_collector_with_a_server_url_as_db_creates_no_file(tmp_path: Path) -> None:
    """Direct mode to a server that is down: the collector starts (batches wait for the server)
    and never takes the URL for a path."""
    url = f"http://127.0.0.1:{free_port()}"
    e = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TELEMETRY_")}
    e.update(OTEL_TELEMETRY_DB=url, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    sock = tmp_path / "run" / "c.ipc"
    proc = subprocess.Popen([sys.executable, "-m", "otel_telemetry", "collector", "run", "--endpoint",
                             f"ipc://{sock}"], cwd=tmp_path, env=e, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, 60, "collector bind")
        assert proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "unreachable at start-up" in err
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no "http:" directory, no file


def test_sync_beside_a_server_db_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sync:\n  url: http://127.0.0.1:1\n")
    r = _run(["collector", "run", "--config", str(cfg), "--db", "http://127.0.0.1:2", "--endpoint",
              f"ipc://{tmp_path}/c.ipc"], tmp_path)
    assert r.returncode == 2 and "direct mode" in _one_line(r.stderr)


@pytest.mark.parametrize("how", ["--db", "env"])
def test_cli_on_a_down_server_is_one_line_and_creates_nothing(tmp_path: Path, how: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args, env = (["query", "--db", url], {}) if how == "--db" else (["query"], {"OTEL_TELEMETRY_DB": url})
    r = _run(args, tmp_path, **env)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert url in line and "refused" in line.lower()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["ws://127.0.0.1:8080", "wss://h", "file:///tmp/x.db", "http://u:p@h:1"])
def test_unsupported_urls_exit_2(tmp_path: Path, url: str) -> None:
    for args, env in ((["stats", "--db", url], {}), (["status"], {"OTEL_TELEMETRY_DB": url}),
                      (["collector", "run", "--db", url], {})):
        r = _run(args, tmp_path, **env)
        assert r.returncode == 2, (args, r.stderr)
        assert "not supported" in _one_line(r.stderr) or "credentials" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("yaml_text", "words"), [
    ("db: ws://127.0.0.1:1\n", "ws:// is not supported"),
    ("sync:\n  url: ./central.db\n", "not a libSQL server URL"),
    ("sync:\n  url: http://127.0.0.1:1\n  bogus: 1\n", "unknown key 'bogus'"),
    ("sync:\n  retention: true\n", "sync.url is required"),
    ("sync:\n  url: http://127.0.0.1:1\n  batch_rows: 0\n", "batch_rows"),
    ("sync:\n  url: http://127.0.0.1:1\n  auth_token_file: /nonexistent/token\n", "cannot read token file"),
    ("instance: ''\n", "instance"),
])
def test_bad_sync_config_is_one_line(tmp_path: Path, yaml_text: str, words: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    db = [] if yaml_text.startswith("db:") else ["--db", str(tmp_path / "c.db")]  # --db would win
    r = _run(["collector", "run", "--config", str(cfg), *db, "--endpoint", f"ipc://{tmp_path}/c.ipc"],
             tmp_path)
    assert r.returncode == 2, r.stderr
    assert words in _one_line(r.stderr)


def test_sync_url_from_env_is_validated(tmp_path: Path) -> None:
    r = _run(["collector", "run", "--db", str(tmp_path / "c.db"), "--endpoint", f"ipc://{tmp_path}/c.ipc"],
             tmp_path, OTEL_TELEMETRY_SYNC_URL="ws://127.0.0.1:1")
    assert r.returncode == 2 and "ws:// is not supported" in _one_line(r.stderr)
