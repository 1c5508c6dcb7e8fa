"""The ``sync:`` section of collector.yaml (and ``$OTEL_TELEMETRY_SYNC_URL``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ...store import location

KEYS = {"url", "auth_token_file", "retention", "batch_rows", "interval", "timeout"}


@dataclass
class SyncConfig:
    url: str  # normalised http(s) URL of the central server (location.parse)
    auth_token_file: str | None = None  # $OTEL_TELEMETRY_DB_AUTH_TOKEN(_FILE) win over it
    retention: bool = False  # also apply this collector's retention days on the server
    batch_rows: int = 2000  # rows per shipping transaction (one request)
    interval: float = 0.5  # seconds between looks for new committed rows when idle
    timeout: float = 10.0  # seconds to wait for the server (connect, and each answer)


def parse_sync(raw: Any, env_url: str | None, where: str) -> SyncConfig | None:
    """``sync:`` → SyncConfig (None when neither it nor the env url is set); ValueError naming the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping ({', '.join(sorted(KEYS))})")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    url = env_url or raw.get("url")
    if not url:
        if raw:
            raise ValueError(f"{where}.url is required (or set $OTEL_TELEMETRY_SYNC_URL)")
        return None
    loc = location.parse(str(url))
    if not loc.is_remote:
        raise ValueError(f"{where}.url {url!r} is not a libSQL server URL (http://, https:// or libsql://)")
    cfg = SyncConfig(url=str(loc.url))
    token_file = raw.get("auth_token_file")
    if token_file is not None:
        if not isinstance(token_file, str) or not token_file:
            raise ValueError(f"{where}.auth_token_file must be a file path")
        cfg.auth_token_file = os.path.expanduser(token_file)
        location.read_token_file(cfg.auth_token_file, f"{where}.auth_token_file")  # checked at start-up
    if "retention" in raw:
        if not isinstance(raw["retention"], bool):
            raise ValueError(f"{where}.retention must be true or false")
        cfg.retention = raw["retention"]
    if "batch_rows" in raw:
        n = raw["batch_rows"]
        if type(n) is not int or not 1 <= n <= 100_000:
            raise ValueError(f"{where}.batch_rows must be an integer from 1 to 100000")
        cfg.batch_rows = n
    for key in ("interval", "timeout"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.01 <= v <= 3600:
                raise ValueError(f"{where}.{key} must be seconds from 0.01 to 3600")
            setattr(cfg, key, float(v))
    return cfg
