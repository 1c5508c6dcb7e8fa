"""ZeroMQ over tcp://: CURVE with a ZAP allow-list of client keys (issue 5, FINDINGS §2)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import HERE, CollectorProc, producer_result, wait_for

from otel_telemetry.cli.commands import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keys(d: Path, name: str) -> tuple[Path, Path]:
    res = CliRunner().invoke(main, ["keys", "generate", "--dir", str(d), "--name", name])
    assert res.exit_code == 0, res.output
    return d / f"{name}.key", d / f"{name}.key_secret"


class TcpCollector(CollectorProc):
    """The shared collector process, bound to a tcp:// endpoint; ready once it logs "listening"."""

    def __init__(self, tmp: Path, endpoint: str, zmq_section: dict | None = None) -> None:
        super().__init__(tmp)
        self.endpoint = endpoint
        cfg = yaml.safe_load(self.config.read_text())
        if zmq_section:
            cfg["receivers"] = {"zmq": zmq_section}
        self.config.write_text(yaml.safe_dump(cfg))

    def launch(self) -> subprocess.Popen[bytes]:
        self._free_otlp_ports()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_telemetry", "collector", "run", "--config", str(self.config),
             "--db", self.db, "--endpoint", self.endpoint],
            stderr=open(self.log, "ab"), stdout=subprocess.DEVNULL,
        )
        return self.proc

    def start(self) -> TcpCollector:
        proc = self.launch()
        wait_for(lambda: "listening on" in self.log.read_text() or proc.poll() is not None,
                 what="collector bind")
        assert proc.poll() is None, self.log.read_text()
        return self


def _produce(endpoint: str, spans: int = 30, shutdown: float = 5, **env: str) -> dict:
    cmd = [sys.executable, str(HERE / "producer.py"), "--endpoint", endpoint, "--spans", str(spans),
           "--join-timeout", "3", "--shutdown-timeout", str(shutdown)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TELEMETRY_CURVE")}
    full_env.update(env)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    return producer_result(proc)


@pytest.fixture
def curve_collector(tmp_path: Path):  # type: ignore[no-untyped-def]
    server_dir, allowed_dir, other_dir = tmp_path / "server", tmp_path / "allowed", tmp_path / "other"
    server_pub, server_secret = _keys(server_dir, "collector")
    _, allowed_secret = _keys(allowed_dir, "client")
    _, unknown_secret = _keys(other_dir, "intruder")
    c = TcpCollector(tmp_path, f"tcp://127.0.0.1:{_free_port()}",
                     {"curve": {"secret_key_file": str(server_secret), "allowed_clients_dir": str(allowed_dir)}})
    c.start()
    yield c, server_pub, allowed_secret, unknown_secret
    if c.proc is not None:
        c.stop()


def test_allowed_client_is_stored(curve_collector) -> None:  # type: ignore[no-untyped-def]
    c, server_pub, allowed_secret, _ = curve_collector
    out = _produce(c.endpoint, OTEL_TELEMETRY_CURVE_SERVER_KEY=str(server_pub),
                   OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(allowed_secret))
    total = sum(out["emitted"].values())
    assert out["counters"]["sent"] == total and not out["counters"]["dropped"], out
    wait_for(lambda: sum(c.counts_by_category().values()) >= total, what="records stored")
    assert c.stop() == 0


def test_server_key_as_z85_text(curve_collector) -> None:  # type: ignore[no-untyped-def]
    import zmq.auth

    c, server_pub, allowed_secret, _ = curve_collector
    z85_text = zmq.auth.load_certificate(server_pub)[0].decode()
    out = _produce(c.endpoint, spans=6, OTEL_TELEMETRY_CURVE_SERVER_KEY=z85_text,
                   OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(allowed_secret))
    assert out["counters"]["sent"] == sum(out["emitted"].values()), out


# Where no collector will ever take the records, the shutdown holds them for its whole timeout
# before counting them no_collector: a short one (the join timeout, 3 s, is what waits for a handshake).
NOBODY = 1.0


def _assert_nothing_delivered(c: TcpCollector, out: dict) -> None:
    assert out["counters"]["sent"] == 0, out
    assert out["counters"]["dropped"].get("no_collector", 0) == sum(out["emitted"].values()), out
    assert c.stop() == 0
    assert sum(c.counts_by_category().values()) == 0


def test_unknown_client_key_delivers_nothing(curve_collector) -> None:  # type: ignore[no-untyped-def]
    c, server_pub, _, unknown_secret = curve_collector
    out = _produce(c.endpoint, shutdown=NOBODY, OTEL_TELEMETRY_CURVE_SERVER_KEY=str(server_pub),
                   OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(unknown_secret))
    _assert_nothing_delivered(c, out)


def test_plaintext_client_delivers_nothing(curve_collector) -> None:  # type: ignore[no-untyped-def]
    c, *_ = curve_collector
    _assert_nothing_delivered(c, _produce(c.endpoint, shutdown=NOBODY))


def test_bad_key_file_is_counted_not_raised(curve_collector, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, server_pub, *_ = curve_collector
    bad = tmp_path / "garbage.key_secret"
    bad.write_text("not a certificate\n")
    out = _produce(c.endpoint, spans=6, shutdown=NOBODY, OTEL_TELEMETRY_CURVE_SERVER_KEY=str(server_pub),
                   OTEL_TELEMETRY_CURVE_CLIENT_KEY=str(bad))
    _assert_nothing_delivered(c, out)


def test_non_loopback_tcp_without_curve_is_refused(tmp_path: Path) -> None:
    c = TcpCollector(tmp_path, f"tcp://0.0.0.0:{_free_port()}")
    rc = c.launch().wait(30)
    c.proc = None
    assert rc == 1
    log = c.log.read_text()
    assert "receivers.zmq.curve is not configured" in log and "tcp://0.0.0.0" in log, log


def test_loopback_tcp_without_curve_warns(tmp_path: Path) -> None:
    c = TcpCollector(tmp_path, f"tcp://127.0.0.1:{_free_port()}").start()
    try:
        out = _produce(c.endpoint, spans=6)
        assert out["counters"]["sent"] == sum(out["emitted"].values()), out
        assert "plaintext ZeroMQ without CURVE" in c.log.read_text()
    finally:
        assert c.stop() == 0


def test_keys_generate_modes(tmp_path: Path) -> None:
    import zmq.auth

    d = tmp_path / "new" / "keys"
    pub, secret = _keys(d, "collector")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    public, secret_key = zmq.auth.load_certificate(secret)
    assert zmq.auth.load_certificate(pub) == (public, None) and secret_key and len(public) == 40
    again = CliRunner().invoke(main, ["keys", "generate", "--dir", str(d), "--name", "collector"])
    assert again.exit_code == 1 and "--force" in again.output
    assert zmq.auth.load_certificate(secret)[1] == secret_key  # not overwritten


def test_curve_config_validation(tmp_path: Path) -> None:
    from otel_telemetry.collector import config as cconfig

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"receivers": {"zmq": {"curve": {"secret_key_file": str(tmp_path / "nope")}}}}))
    with pytest.raises(cconfig.ConfigError, match="receivers.zmq.curve"):
        cconfig.load(str(cfg))
