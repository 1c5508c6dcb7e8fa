"""deploy/: what can be checked without a container engine. The files parse, every path the
Dockerfile and compose.yaml use exists, the collector config passes the collector's own validation,
forward targets name compose services, and the Grafana dashboard only uses provisioned datasources."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

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
    assert {"collector", "jaeger", "tempo", "grafana"} <= set(services)
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
    assert {(t.protocol, urlsplit(t.endpoint).hostname) for t in targets} == {
        ("http/protobuf", "jaeger"), ("grpc", "tempo")}
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
    assert cfg.zmq.curve is not None and len(cfg.forward) == 2
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
