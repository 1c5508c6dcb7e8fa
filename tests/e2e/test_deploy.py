"""deploy/: what can be checked without a container engine. The files parse, every path the
Dockerfile and compose.yaml use exists, the collector config passes the collector's own validation,
forward targets name compose services, and the Grafana dashboard only uses provisioned datasources."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit
from urllib.request import urlopen

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"


def _yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_services_and_paths() -> None:
    compose = _yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"collector", "jaeger", "tempo", "victoriametrics", "loki", "grafana"} <= set(services)
    build = services["collector"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services, (name, dep)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: bind mount {src} missing"
            else:
                assert src in compose.get("volumes", {}), f"{name}: named volume {src} not declared"
    # Host ports published on loopback only, and never twice.
    published = [p.rsplit(":", 1)[0] for svc in services.values() for p in svc.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published) and len(published) == len(set(published))


def test_dockerfile_references_existing_paths() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0][0] == "FROM"
    copies = [rest.split() for word, rest in instructions if word == "COPY"]
    assert copies
    for parts in copies:
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} missing from the build context"
    entry = json.loads(dict(instructions)["ENTRYPOINT"])
    assert entry[:3] == ["otel-telemetry", "collector", "run"]
    assert entry[entry.index("--config") + 1] == "/etc/otel-telemetry/collector.yaml"
    # The .dockerignore keeps everything the COPYs need.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for parts in copies:
        for src in parts[:-1]:
            assert f"!{src}" in ignore or f"!{src.rstrip('/')}/" in ignore, src


def test_collector_config_validates(tmp_path: Path) -> None:
    from otel_telemetry.collector import config as cconfig
    from otel_telemetry.collector.forward.forwarder import parse_forward_config

    path = DEPLOY / "collector.yaml"
    raw = _yaml(path)
    targets = parse_forward_config(raw["forward"], f"{path}: forward")
    compose = _yaml(DEPLOY / "compose.yaml")["services"]
    # Each signal goes to a backend that takes it: traces to Jaeger and Tempo, metrics to
    # VictoriaMetrics, logs to Loki (OTLP/HTTP paths: /opentelemetry/v1/metrics, /otlp/v1/logs).
    assert {(t.protocol, urlsplit(t.endpoint).hostname, t.signals, urlsplit(t.endpoint).path) for t in targets} == {
        ("http/protobuf", "jaeger", ("traces",), ""), ("grpc", "tempo", ("traces",), ""),
        ("http/protobuf", "victoriametrics", ("metrics",), "/opentelemetry"),
        ("http/protobuf", "loki", ("logs",), "/otlp")}
    for t in targets:
        url = urlsplit(t.endpoint)
        assert str(url.port) in compose[url.hostname]["expose"], t.endpoint
        assert t.queue_dir and t.queue_dir.startswith("/var/lib/otel-telemetry/")
    # The whole file with the collector's loader, its secrets made the way deploy/make-secrets.sh does.
    secrets = tmp_path / "secrets"
    _make_secrets(secrets)
    text = path.read_text().replace("/etc/otel-telemetry/secrets", str(secrets))
    for t in targets:
        assert t.queue_dir
        text = text.replace(t.queue_dir, str(tmp_path / Path(t.queue_dir).name))
    rewritten = tmp_path / "collector.yaml"
    rewritten.write_text(text)
    cfg = cconfig.load(str(rewritten))
    assert cfg.endpoint == "tcp://0.0.0.0:5555" and cfg.db == "/var/lib/otel-telemetry/telemetry.db"
    assert (cfg.otlp_grpc.endpoint, cfg.otlp_http.endpoint) == ("0.0.0.0:4317", "0.0.0.0:4318")
    assert cfg.zmq.curve is not None and len(cfg.forward) == 4
    # The start-up exposure check passes: every non-loopback receiver is protected.
    cconfig.check_otlp_exposure("receivers.otlp_grpc", cfg.otlp_grpc)
    cconfig.check_otlp_exposure("receivers.otlp_http", cfg.otlp_http)


def _make_secrets(d: Path) -> None:
    import zmq.auth

    (d / "zmq" / "clients").mkdir(parents=True)
    zmq.auth.create_certificates(str(d / "zmq"), "collector")
    _, client_secret = zmq.auth.create_certificates(str(d), "app")
    (d / "zmq" / "clients" / "app.key").write_text((d / "app.key").read_text())
    (d / "otlp-token").write_text("t0ken-for-the-test\n")
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI to make a self-signed certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=otel-telemetry", "-keyout", str(d / "tls.key"), "-out", str(d / "tls.crt")],
                   check=True, capture_output=True)


def test_loki_takes_otlp_logs() -> None:
    loki = _yaml(DEPLOY / "loki.yaml")
    assert loki["limits_config"]["allow_structured_metadata"] is True  # OTLP ingestion needs it
    assert {c["schema"] for c in loki["schema_config"]["configs"]} == {"v13"}
    assert loki["server"]["http_listen_port"] == 3100


def test_tempo_receives_otlp() -> None:
    tempo = _yaml(DEPLOY / "tempo.yaml")
    protocols = tempo["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")


def test_grafana_provisioning_and_dashboard() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    sources = _yaml(prov / "datasources" / "datasources.yaml")["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    assert by_uid["tempo"]["type"] == "tempo" and by_uid["tempo"]["url"] == "http://tempo:3200"
    assert by_uid["jaeger"]["type"] == "jaeger" and by_uid["jaeger"]["url"] == "http://jaeger:16686"
    # Metrics and logs reach Grafana too (VictoriaMetrics speaks the Prometheus query API).
    assert by_uid["victoriametrics"]["type"] == "prometheus"
    assert by_uid["victoriametrics"]["url"] == "http://victoriametrics:8428"
    assert by_uid["loki"]["type"] == "loki" and by_uid["loki"]["url"] == "http://loki:3100"
    providers = _yaml(prov / "dashboards" / "dashboards.yaml")["providers"]
    compose = _yaml(DEPLOY / "compose.yaml")["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in compose["volumes"]}
    for p in providers:
        host_dir = DEPLOY / mounted[p["options"]["path"]]
        dashboards = sorted(host_dir.glob("*.json"))
        assert dashboards, host_dir
        for d in dashboards:
            dash = json.loads(d.read_text())
            assert dash["uid"] and dash["panels"]
            for panel in dash["panels"]:
                for ds in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                    if ds is not None:
                        assert ds["uid"] in by_uid and ds["type"] == by_uid[ds["uid"]]["type"], panel["title"]


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "otel-telemetry-collector.service").read_text())
    exec_start = unit["Service"]["ExecStart"]
    assert re.search(r"otel-telemetry collector run --config \S+", exec_start)
    assert unit["Service"]["KillSignal"] == "SIGTERM"


# A real VictoriaMetrics (FINDINGS §3b: Debian trixie's victoria-metrics .deb, extracted with
# dpkg-deb -x): the one `make peers` installs (tests/peers.py: skip with the reason, or fail under
# CI=true, when it could not be installed), or another named by the environment.
def _vm_binary() -> str:
    given = os.environ.get("OTEL_TELEMETRY_TEST_VICTORIA_METRICS") or shutil.which("victoria-metrics")
    if given:
        return given
    from peers import peer

    return str(peer("victoria-metrics"))


def test_metrics_reach_victoriametrics_as_deployed(tmp_path: Path) -> None:
    """deploy/collector.yaml's victoriametrics target, pointed at a local VictoriaMetrics started
    with compose.yaml's flags; an app's host metrics come back through PromQL, as Grafana reads them."""
    from conftest import CollectorProc, wait_for
    from otlp_sink import free_port

    vm_bin = _vm_binary()
    port = free_port()
    svc = _yaml(DEPLOY / "compose.yaml")["services"]["victoriametrics"]
    flags = [f for f in svc["command"] if not f.startswith(("-storageDataPath", "-httpListenAddr"))]
    vm = subprocess.Popen([vm_bin, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}",
                           "-search.latencyOffset=0s", *flags],
                          stdout=subprocess.DEVNULL, stderr=open(tmp_path / "vm.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{base}/health") == b"OK", what="VictoriaMetrics up")
        [target] = [t for t in _yaml(DEPLOY / "collector.yaml")["forward"] if t["name"] == "victoriametrics"]
        target = {**target, "endpoint": target["endpoint"].replace("victoriametrics:8428", f"127.0.0.1:{port}")}
        del target["queue_dir"]
        c = CollectorProc(tmp_path)
        c.config.write_text(yaml.safe_dump({**yaml.safe_load(c.config.read_text()), "forward": [target]}))
        c.start()
        try:
            app = ("import otel_telemetry, logging, psutil\n"
                   "tel = otel_telemetry.configure('vm-app', host_metrics=True, export_interval=3600)\n"
                   # CPU utilization is a delta between two reads: wait for the clock tick to move.
                   "t0 = sum(psutil.cpu_times())\n"
                   "while sum(psutil.cpu_times()) == t0: pass\n"
                   "logging.getLogger('x').addHandler(otel_telemetry.logging_handler(tel))\n"
                   "logging.getLogger('x').error('a log line the metrics backend must not get')\n"
                   "assert tel.shutdown(15)\n")
            subprocess.run([sys.executable, "-c", app], check=True, timeout=120,
                           env={**os.environ, "OTEL_TELEMETRY_ENDPOINT": c.endpoint,
                                "OTEL_TELEMETRY_JOIN_TIMEOUT": "10"})
            used = 'system_filesystem_usage_bytes{system_filesystem_state="used"}'
            query = f"{base}/api/v1/query?query=" + quote(used)
            wait_for(lambda: _result(query), timeout=60, what="metrics in VictoriaMetrics")
        finally:
            c.stop()
        fwd = c.status()["forward"]["victoriametrics"]
        series = _result(query)
        assert any(s["metric"].get("system_filesystem_mountpoint") == "/" for s in series), series
        assert all(s["metric"].get("service_name") == "vm-app" for s in series), series
        # Every PromQL query of the provisioned dashboard finds data.
        dash = json.loads((DEPLOY / "grafana" / "dashboards" / "otel-telemetry.json").read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())
                 if (t.get("datasource") or p["datasource"])["uid"] == "victoriametrics"]
        assert len(exprs) == 2
        for expr in exprs:
            url = f"{base}/api/v1/query?query=" + quote(expr)
            wait_for(lambda url=url: _result(url), what=f"data for {expr}")
        # The log record was never offered to it; every metric point was sent.
        assert fwd["dropped"] == {} and fwd["failed"] == 0 and fwd["sent"] == fwd["consumed"] > 0, fwd
    finally:
        vm.terminate()
        vm.wait(30)


def _result(url: str) -> list:
    body = _get(url)
    return json.loads(body)["data"]["result"] if body else []


def _get(url: str) -> bytes:
    try:
        with urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback URL built above
            return resp.read()
    except OSError:
        return b""
