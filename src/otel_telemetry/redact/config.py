"""Settings of ``otel_telemetry.redact``: :class:`RedactionConfig`, where the HMAC key comes from,
and how the app side and the collector build their config (argument > env > file > default).

The pseudonym key, first found wins:

1. ``RedactionConfig.pseudonym_key`` (``configure(redaction=RedactionConfig(pseudonym_key=...))``);
2. ``OTEL_TELEMETRY_REDACT_KEY`` (at least 16 bytes);
3. ``RedactionConfig.key_file`` — by default ``$XDG_CONFIG_HOME/otel-telemetry/redact.key``
   (``OTEL_TELEMETRY_REDACT_KEY_FILE`` or the collector's ``redaction.key_file`` move it). When
   the file does not exist, a random 256-bit key is written there (mode 0600, directory 0700,
   created atomically, so concurrent processes agree) the first time a value is pseudonymised.
   Apps and a collector of the same user on one device thus share a key by default, and the key
   never leaves the device with the data (a copied database or forwarded payload).
4. none usable (the file cannot be read or written, or a key shorter than 16 bytes): values of
   pseudonymised keys are redacted whole (``[REDACTED:pseudonym_unkeyed]``, counted), never
   hashed without a key.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import settings
from . import rules

log = logging.getLogger("otel_telemetry.redact")

ENV_ENABLED = "OTEL_TELEMETRY_REDACT"
ENV_KEY = "OTEL_TELEMETRY_REDACT_KEY"
ENV_KEY_FILE = "OTEL_TELEMETRY_REDACT_KEY_FILE"
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class RedactionConfig:
    """Settings of a :class:`~otel_telemetry.redact.Redactor`; every field has a safe default."""

    enabled: bool = True
    patterns: Mapping[str, str] = field(default_factory=dict)  # extra {rule name: regex}
    allow_keys: Collection[str] | None = None  # allow-list mode: only these keys keep values ("x.*" ok)
    deny_keys: Collection[str] = ()  # redacted whole: full key, last segment, or glob ("*.email")
    callback: Callable[[str, Any], Any] | None = None  # (key, value) -> value, after built-ins
    pseudonymize_keys: Collection[str] = rules.DEFAULT_PSEUDONYMIZE_KEYS
    pseudonym_key: str | bytes | None = field(default=None, repr=False)  # HMAC secret; None -> env, key_file
    disable: Collection[str] = ()  # built-in detector names to switch off (see DETECTORS)
    key_file: str | None = None  # HMAC key file, created with a random key when missing


def app_config(argument: RedactionConfig | bool | None = None) -> RedactionConfig:
    """The app side's config: ``configure(redaction=...)`` > ``OTEL_TELEMETRY_REDACT*`` env > default.

    ``False`` switches redaction off; a :class:`RedactionConfig` is used as given (its ``enabled``
    wins over the env); ``None``/``True`` take the env, else on. The key follows the module doc.
    """
    if argument is False:
        return RedactionConfig(enabled=False)
    if isinstance(argument, RedactionConfig):
        cfg = argument
    else:
        cfg = RedactionConfig(enabled=settings.resolve("redact"))
    return with_key(cfg)


def with_key(cfg: RedactionConfig, key_file: str | None = None) -> RedactionConfig:
    """Fill in the key sources the config leaves open: env key, else the (default) key file."""
    if cfg.pseudonym_key is not None:
        return cfg
    env_key = settings.resolve("redact_key")
    if env_key:
        return replace(cfg, pseudonym_key=env_key)
    return replace(cfg, key_file=cfg.key_file or key_file or settings.resolve("redact_key_file"))


def load_key(path: str) -> bytes | None:
    """The key in ``path`` (created with 32 random bytes, hex, 0600, when missing); None if the
    file cannot be read or written or holds fewer than 16 bytes (logged, never the key itself)."""
    p = Path(path)
    try:
        try:
            data = p.read_bytes().strip()
        except FileNotFoundError:
            data = _create(p)
        if p.stat().st_mode & 0o077:
            log.warning("redaction key file %s is readable by other users; chmod 600 it", p)
    except OSError as exc:
        log.warning("redaction key file %s unusable (%s): pseudonymised keys are redacted whole", p,
                    exc.strerror or type(exc).__name__)
        return None
    if len(data) < MIN_KEY_BYTES:
        log.warning("redaction key file %s holds fewer than %d bytes: pseudonymised keys are redacted whole",
                    p, MIN_KEY_BYTES)
        return None
    return data


def _create(p: Path) -> bytes:
    """Write a new random key atomically: a private temp file hard-linked into place, so another
    process never reads a half-written key and, if it raced us, both end up with its key."""
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, p)
        except FileExistsError:
            return p.read_bytes().strip()
        log.info("created a random redaction key in %s (keep it to keep pseudonyms stable)", p)
        return key
    finally:
        tmp.unlink(missing_ok=True)
