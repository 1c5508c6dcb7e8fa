"""Shared fixtures: a real collector process on a temporary ipc endpoint and database file."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
import yaml

HERE = Path(__file__).parent
SHARED_OTLP = HERE.parent.parent / "shared" / "data" / "otlp"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is true; a readiness wait, never a timing assertion."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """With two workers (``make test``), a test marked ``heavy`` holds a lock of the run's, so two
    such tests never run at once: each keeps up with a stream or a deadline, which two of them at
    once on two cores would test the machine instead. Taken outside pytest-timeout's timer (this
    wrapper runs first), so waiting for the lock never counts against a test's timeout."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None or item.get_closest_marker("heavy") is None:
        yield
        return
    # The workers' base temp dirs share a parent (pytest-of-USER/pytest-N): pytest removes it later.
    root = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]
    with open(root / f"heavy-{run}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_RUNNING: list[CollectorProc] = []  # every collector process the tests started


@pytest.fixture(autouse=True, scope="session")
def _no_stray_collectors() -> Iterator[None]:
    """A test that fails half-way must not leave its collector running after the session (it
    would hold its ports and keep working in the background of later runs and benchmarks)."""
    yield
    while _RUNNING:
        c = _RUNNING.pop()
        if c.proc is not None and c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(10)


class CollectorProc:
    def __init__(self, tmp: Path, name: str = "c") -> None:
        self.endpoint = f"ipc://{tmp}/{name}.ipc"
        self.db = str(tmp / f"{name}.db")
        self.config = tmp / f"{name}.yaml"
        self.config.write_text("store:\n  flush_interval: 0.05\nretention:\n  interval: 3600\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"{name}.log"
        self.prefix: list[str] = []  # e.g. ["ip", "netns", "exec", NS]: run it on another "host"

    def _free_otlp_ports(self) -> None:
        """OTLP receivers on port 0 unless the test's config chose an endpoint, so collectors of
        concurrent tests never collide on the default ports 4317/4318."""
        cfg = yaml.safe_load(self.config.read_text()) or {}
        receivers = cfg.setdefault("receivers", {}) or {}
        cfg["receivers"] = receivers
        for name in ("otlp_grpc", "otlp_http"):
            section = receivers.get(name) or {}
            section.setdefault("endpoint", "127.0.0.1:0")
            receivers[name] = section
        self.config.write_text(yaml.safe_dump(cfg))

    def start(self) -> CollectorProc:
        self._free_otlp_ports()
        sock = Path(self.endpoint[len("ipc://"):])
        if sock.exists():
            sock.unlink()
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(self.config),
             "--db", self.db, "--endpoint", self.endpoint],
            stderr=open(self.log, "ab"), stdout=subprocess.DEVNULL,
        )
        _RUNNING.append(self)
        wait_for(lambda: sock.exists() or self.proc.poll() is not None, what="collector bind")  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = apsw.Connection(self.db, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def counts_by_category(self) -> dict[str, int]:
        return dict(self.rows("SELECT category, count(*) FROM records GROUP BY category"))

    def status(self) -> dict:
        rows = self.rows("SELECT body FROM collector_status WHERE id = 1")
        return json.loads(rows[0][0]) if rows else {}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProc]:
    c = CollectorProc(tmp_path).start()
    yield c
    if c.proc is not None:
        c.stop()


def run_producer(endpoint: str, *args: str, wait: bool = True) -> subprocess.Popen[bytes] | dict:
    cmd = [sys.executable, str(HERE / "producer.py"), "--endpoint", endpoint, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    if not wait:
        return proc
    return producer_result(proc)


def producer_result(proc: subprocess.Popen[bytes], timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def run_chain(endpoint: str, requests: int, fail_every: int = 5) -> dict[str, dict]:
    """The three-service trace set of ``apps/chain_app.py``: frontend -> payments -> ledger, each a
    separate instrumented process handing its calls' span ids to the next, as propagation would."""
    app = str(HERE / "apps" / "chain_app.py")
    out: dict[str, dict] = {}
    handed = ""
    for role in ("frontend", "payments", "ledger"):
        r = subprocess.run([sys.executable, app, "--endpoint", endpoint, "--role", role, "--requests",
                            str(requests), "--fail-every", str(fail_every)], input=handed.encode(),
                           capture_output=True, timeout=120, env=dict(os.environ))
        assert r.returncode == 0, r.stderr.decode()
        out[role] = json.loads(r.stdout.decode().strip().splitlines()[-1])
        assert out[role]["shutdown_ok"] and out[role]["counters"]["dropped"] == {}, out[role]
        handed = "".join(json.dumps(h) + "\n" for h in out[role]["handed"])
    return out


def otlp_fixture_collector(tmp: Path, names: tuple[str, ...]) -> CollectorProc:
    """A real collector process that received the ``../shared/data/otlp`` files ``names`` over
    OTLP/HTTP (JSON), stopped again so every row is committed."""
    import http.client

    c = CollectorProc(tmp)
    c.config.write_text("store: {flush_interval: 0.02}\nreceivers:\n  otlp_http: {endpoint: '127.0.0.1:0'}\n")
    c.start()
    try:
        # The status can name the receiver before it has bound its port (still ":0" then).
        wait_for(lambda: not c.status().get("otlp_http", {}).get("endpoint", ":0").endswith(":0"),
                 what="status with the bound OTLP endpoint")
        port = int(c.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])
        for name in names:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", "/v1/traces", body=(SHARED_OTLP / name).read_bytes(),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, (name, resp.status)
            finally:
                conn.close()
    finally:
        assert c.stop() == 0
    return c
