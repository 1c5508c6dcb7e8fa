"""`make demo`: collector on the embedded default store + the sample service, then what was stored.

Uses ./demo-data for the database and endpoint so the demo never touches a real installation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo-data"


def cli(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ otel-telemetry {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "otel_telemetry", *args], env=env, check=True)


def main() -> int:
    DATA.mkdir(exist_ok=True)
    env = dict(os.environ, OTEL_TELEMETRY_DB=str(DATA / "telemetry.db"),
               OTEL_TELEMETRY_ENDPOINT=f"ipc://{DATA / 'collector.ipc'}")
    sock = DATA / "collector.ipc"
    print(f"starting collector: db={env['OTEL_TELEMETRY_DB']} endpoint={env['OTEL_TELEMETRY_ENDPOINT']}")
    collector = subprocess.Popen([sys.executable, "-m", "otel_telemetry", "collector", "run",
                                  "--config", str(ROOT / "collector-config" / "collector.yaml")], env=env)
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
