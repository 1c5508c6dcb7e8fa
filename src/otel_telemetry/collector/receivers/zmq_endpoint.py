"""The ZeroMQ receiver's endpoint rules: which endpoints may be bound without CURVE, the lock that
keeps two collectors off one ipc:// path, and the CURVE server set-up (keys and the ZAP allow-list)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

if TYPE_CHECKING:
    from ..config import CurveConfig

log = logging.getLogger("otel_telemetry.collector.zmq")


class EndpointInUse(RuntimeError):
    """Another collector already holds this endpoint."""


class InsecureEndpoint(RuntimeError):
    """A tcp:// endpoint reachable from other hosts without CURVE authentication."""


def _tcp_host(endpoint: str) -> str | None:
    """Host part of a ``tcp://HOST:PORT`` endpoint (brackets stripped), else None."""
    if not endpoint.startswith("tcp://"):
        return None
    host = endpoint[len("tcp://"):].rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback_tcp(endpoint: str) -> bool:
    host = _tcp_host(endpoint)
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a DNS name: reachable from elsewhere


def _ipc_path(endpoint: str) -> Path | None:
    if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
        return Path(endpoint[len("ipc://"):])
    return None


def setup_curve(ctx: zmq.Context, sock: zmq.Socket, curve: CurveConfig, endpoint: str) -> ThreadAuthenticator:
    """CURVE server keys from the secret-key file, and a ZAP handler (started before bind) that
    admits only the client public keys in ``allowed_clients_dir`` (read once, at start-up)."""
    try:
        public, secret = zmq.auth.load_certificate(curve.secret_key_file)
    except (OSError, ValueError) as exc:
        raise ValueError(f"receivers.zmq.curve.secret_key_file {curve.secret_key_file}: {exc}") from None
    if not secret:
        raise ValueError(f"receivers.zmq.curve.secret_key_file {curve.secret_key_file}: no secret-key "
                         "(pass the .key_secret file)")
    allowed = zmq.auth.load_certificates(curve.allowed_clients_dir)
    if not allowed:
        log.warning("%s holds no client public keys: no app can publish", curve.allowed_clients_dir)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("otel_telemetry.collector.zap"))
    auth.start()
    try:
        auth.configure_curve(domain="*", location=curve.allowed_clients_dir)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    except BaseException:
        auth.stop()
        raise
    # No ZAP_DOMAIN: the empty domain is the authenticator's '*' entry; libzmq asks ZAP for
    # every CURVE handshake once a handler is bound (started above, before bind).
    log.info("CURVE on %s: %d allowed client key(s) from %s", endpoint, len(allowed),
             curve.allowed_clients_dir)
    return auth
