"""CURVE on the app's side: the client keys of the XPUB socket (``curve_server_key`` and
``curve_client_key_file`` settings), checked before the socket connects."""

from __future__ import annotations

import logging
import os

import zmq
import zmq.auth
from zmq.utils import z85

log = logging.getLogger("otel_telemetry.sdk.transport")


def apply_curve(sock: zmq.Socket, server: str | None, client: str | None, endpoint: str) -> bool:
    """Set the CURVE client options when configured; False (logged once) if the keys are unusable."""
    if not server and not client:
        return True
    try:
        if not server or not client:
            raise ValueError("both curve_server_key and curve_client_key_file are needed")
        server_key = _server_public_key(server)
        public, secret = zmq.auth.load_certificate(client)
        if not secret:
            raise ValueError(f"{client} holds no secret-key (pass the .key_secret file)")
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    except (OSError, ValueError, zmq.ZMQError) as exc:
        log.error("otel-telemetry: CURVE keys unusable (%s); not connecting to %s, records are dropped "
                  "and counted as no_collector", exc, endpoint)
        return False
    return True


def _server_public_key(value: str) -> bytes:
    """The collector's public key from a key file (``.key`` or ``.key_secret``) or 40 Z85 characters."""
    if os.path.isfile(value):
        public, _ = zmq.auth.load_certificate(value)
        key = public
    else:
        key = value.strip().encode("ascii", "replace")
    if len(key) != 40:
        raise ValueError(f"curve_server_key {value!r}: neither a key file nor a 40-character Z85 key")
    try:
        z85.decode(key)
    except Exception:
        raise ValueError(f"curve_server_key {value!r}: not valid Z85") from None
    return key
