"""`make demo`: collector on the embedded default store + the sample service, then what was stored.

Uses ./demo-data for the database and endpoint so the demo never touches a real installation. With
ports 4317/4318 taken (a local Jaeger or Collector), the OTLP receivers take free ports instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("OTEL_TELEMETRY_DEMO_DATA") or ROOT / "demo-data")  # tests point it elsewhere


def cli(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ otel-telemetry {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "otel_telemetry", *args], env=env, check=True)


def _taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def demo_config() -> Path:
    """collector-config/collector.yaml, or a copy with the OTLP receivers on free ports when 4317 or
    4318 is taken (a local Jaeger or OTel Collector is exactly who runs this demo)."""
    config = ROOT / "collector-config" / "collector.yaml"
    taken = {name: port for name, port in (("otlp_grpc", 4317), ("otlp_http", 4318)) if _taken(port)}
    if not taken:
        return config
    import yaml

    cfg = yaml.safe_load(config.read_text())
    for name in taken:
        cfg["receivers"][name]["endpoint"] = "127.0.0.1:0"
    out = DATA / "collector.demo.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"port(s) {', '.join(map(str, taken.values()))} already taken (a local Jaeger or Collector?): "
          f"the demo's {' and '.join(taken)} receiver(s) listen on free ports instead "
          "(`otel-telemetry status` shows which)")
    return out


def main() -> int:
    DATA.mkdir(exist_ok=True)
    env = dict(os.environ, OTEL_TELEMETRY_DB=str(DATA / "telemetry.db"),
               OTEL_TELEMETRY_ENDPOINT=f"ipc://{DATA / 'collector.ipc'}")
    sock = DATA / "collector.ipc"
    print(f"starting collector: db={env['OTEL_TELEMETRY_DB']} endpoint={env['OTEL_TELEMETRY_ENDPOINT']}")
    collector = subprocess.Popen([sys.executable, "-m", "otel_telemetry", "collector", "run",
                                  "--config", str(demo_config())], env=env)
    try:
        end = time.monotonic() + 20
        while not sock.exists():
            if collector.poll() is not None or time.monotonic() > end:
                print("collector did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        subprocess.run([sys.executable, str(ROOT / "examples" / "sample_service.py")], env=env, check=True)
    finally:
        collector.send_signal(signal.SIGTERM)
        rc = collector.wait(30)
    print(f"collector stopped (exit {rc})")
    cli("stats", "--last", "1h", env=env)
    cli("query", "--category", "ai_behavior", "--limit", "5", env=env)
    cli("query", "--level", "error", "--limit", "5", env=env)
    cli("status", env=env)
    return rc


if __name__ == "__main__":
    sys.exit(main())
