"""Helpers shared by the OTLP receivers, the dashboard and the app side: loopback tests, the bearer
check, the TLS context.

A token is only ever compared with ``hmac.compare_digest`` (constant time in the token's content)
and never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import ssl

UNAUTHENTICATED = "unauthenticated"  # rejection reason in the receivers' counters


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (also IPv4-mapped); any other name or address
    (0.0.0.0, ::, a LAN address, a host name) is not loopback."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def endpoint_stays_on_device(endpoint: str) -> bool:
    """True for a ZeroMQ endpoint whose traffic cannot leave this device: ``ipc://``, ``inproc://``
    and ``tcp://`` to a loopback host. Anything else (another host, ``*``, a LAN address, a name
    that is not ``localhost``) may cross a network."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rpartition(":")[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return bool(host) and is_loopback_host(host)


def bearer_matches(header: str | None, token: str) -> bool:
    """``header`` is the whole ``Authorization`` value; True iff it is ``Bearer <token>``."""
    if not header:
        return False
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"),
                               token.encode("utf-8", "surrogateescape"))


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context; raises OSError / ssl.SSLError if the files are unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
