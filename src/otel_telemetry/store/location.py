"""Where the store lives: a local file path or a libSQL server URL, decided in this one place.

``--db``, ``$OTEL_TELEMETRY_DB`` and ``db:`` in collector.yaml all pass through :func:`parse`, so a
URL is never taken for a path (``http://h:8080`` used to become the file ``http:/h:8080``).

The auth token for a server is never part of the URL or the config: it comes from
``$OTEL_TELEMETRY_DB_AUTH_TOKEN`` or a token file (0600), see :func:`read_token`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_ENV = "OTEL_TELEMETRY_DB_AUTH_TOKEN"
TOKEN_FILE_ENV = "OTEL_TELEMETRY_DB_AUTH_TOKEN_FILE"
# libsql:// is the libSQL clients' name for "the server's HTTPS endpoint" (Turso and sqld docs).
SCHEMES = {"http": "http", "https": "https", "libsql": "https"}
# Anything that looks like scheme:// is a URL; an unsupported one is an error, never a file name.
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class LocationError(ValueError):
    """A database location or token source we cannot use (one line for the user)."""


@dataclass(frozen=True)
class DbLocation:
    """A parsed ``db`` setting: ``url`` (http/https, normalised) for a server, else ``path``."""

    raw: str
    path: str | None = None
    url: str | None = None

    @property
    def is_remote(self) -> bool:
        return self.url is not None

    def __str__(self) -> str:
        return self.url or self.path or self.raw


def is_url(value: str) -> bool:
    return bool(_URL_RE.match(value.strip()))


def parse(value: str | os.PathLike[str]) -> DbLocation:
    """Classify ``value``; raises :class:`LocationError` for an unsupported or malformed URL."""
    raw = os.fspath(value)
    text = raw.strip()
    if not text:
        raise LocationError("the database location is empty")
    if not is_url(text):
        return DbLocation(raw=raw, path=raw)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise LocationError(f"database URL {text!r}: scheme {scheme}:// is not supported "
                            "(use http://, https:// or libsql://, or a file path)")
    if parts.username or parts.password:
        raise LocationError(f"database URL {text!r}: credentials in the URL are not accepted; "
                            f"set ${TOKEN_ENV} or a token file")
    if parts.query or parts.fragment:
        raise LocationError(f"database URL {text!r}: query strings are not accepted (a token never "
                            f"goes into the URL; set ${TOKEN_ENV} or a token file)")
    try:
        port = parts.port
    except ValueError:
        raise LocationError(f"database URL {text!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise LocationError(f"database URL {text!r} names no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port is not None else host
    path = parts.path.rstrip("/")
    return DbLocation(raw=raw, url=f"{SCHEMES[scheme]}://{netloc}{path}")


def read_token_file(path: str, where: str) -> str:
    """The token in ``path`` (one line); the file must not be readable by group or others."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise LocationError(f"token file {path} ({where}) is accessible by group/others (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise LocationError(f"cannot read token file {path} ({where}): {exc.strerror}") from None
    if not token:
        raise LocationError(f"token file {path} ({where}) is empty")
    return token


def read_token(token_file: str | None = None, where: str = "auth_token_file") -> str | None:
    """The server token: ``$OTEL_TELEMETRY_DB_AUTH_TOKEN``, else its ``_FILE`` variant, else
    ``token_file`` (from collector.yaml), else None (a server without auth)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    env_file = os.environ.get(TOKEN_FILE_ENV)
    if env_file:
        return read_token_file(env_file, f"${TOKEN_FILE_ENV}")
    if token_file:
        return read_token_file(token_file, where)
    return None
