"""`make demo` (examples/demo.py) as a user runs it, with the OTLP ports 4317/4318 held by another
process: the demo still stores every record the sample service sent, and says what it did."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HERE


def _hold(port: int) -> socket.socket | None:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:  # already taken by someone else: just as good for this test
        s.close()
        return None
    s.listen()
    return s


@pytest.mark.timeout(300)
def test_demo_with_otlp_ports_taken(tmp_path: Path) -> None:
    held = [_hold(4317), _hold(4318)]
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_TELEMETRY_DEMO_DATA"] = str(tmp_path / "demo-data")
        out = subprocess.run([sys.executable, str(HERE.parent / "examples" / "demo.py")], capture_output=True,
                             text=True, timeout=240, env=env)
    finally:
        for s in held:
            if s is not None:
                s.close()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "4317, 4318 already taken" in out.stdout
    assert '"emitted": 838, "sent": 838, "dropped": {}' in out.stdout
    assert "stored=838" in out.stderr
