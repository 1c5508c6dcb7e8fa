"""A real OTLP receiver process (``otlp_sink_server.py``) driven from tests: ``Sink`` starts it on
free ports of 127.0.0.1 and reads back what it recorded. Shared by the forwarding tests."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """tests/otlp_sink_server.py as a subprocess; ``items()`` reads back what it recorded."""

    def __init__(self, tmp: Path, *flags: str, grpc_port: int = 0, http_port: int = 0) -> None:
        self.out = tmp / "sink.jsonl"
        self.flags = flags
        self.grpc_port, self.http_port = grpc_port, http_port
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Sink:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "otlp_sink_server.py"), "--out", str(self.out),
             "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port), *self.flags],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.grpc_port, self.http_port = ports["grpc_port"], ports["http_port"]
        return self

    def endpoint(self, protocol: str) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{self.http_port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        text = self.out.read_text()
        # The sink may be mid-write: a last line without its newline is not complete yet.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def items(self, signal_name: str | None = None) -> list[dict[str, Any]]:
        return [x for x in self.lines() if "attempt" not in x and (signal_name is None or x["signal"] == signal_name)]

    def attempts(self) -> list[dict[str, Any]]:
        return [x for x in self.lines() if "attempt" in x]
