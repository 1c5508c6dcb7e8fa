"""Redaction in the collector: the ``redaction:`` section of collector.yaml, and the step that
redacts decoded batches before the store, the forwarders and (through the store) alerts see them.

Data arriving over OTLP is always redacted here (unless ``enabled: false``). ZeroMQ frames are
redacted here when the app asks for it (``wire.FLAG_REDACT``: the app sends over an endpoint that
stays on the device and leaves the work to this process); frames an app redacted before they left
it (its endpoint crosses a network) are redacted again only with ``redact_zmq: true``
(pseudonyms made by the app, ``ph_…``, are kept as they are). A record the
redactor fails on is dropped and counted as ``redaction_error``, never stored as it was.

    redaction:
      enabled: true                 # env OTEL_TELEMETRY_REDACT wins (argument > env > file > default)
      redact_zmq: false
      patterns: {order_ref: 'ORD-\\d{6}'}   # extra detectors: rule name -> regex
      allow_keys: null              # a list switches on allow-list mode ("http.*" globs)
      deny_keys: [internal.note]    # replaced whole
      pseudonymize_keys: [user.id, enduser.id, session.id]   # replaces the default list
      disable: []                   # built-in detectors to switch off
      key_env: MY_REDACT_KEY        # env var holding the HMAC key, or:
      key_file: /etc/otel-telemetry/redact.key   # created (random, 0600) if missing
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..redact.config import RedactionConfig, with_key
from ..redact.redactor import DETECTORS, MIN_KEY_BYTES, Redactor

log = logging.getLogger("otel_telemetry.collector.redaction")

KEYS = frozenset({"enabled", "redact_zmq", "patterns", "allow_keys", "deny_keys", "pseudonymize_keys", "disable",
                  "key_env", "key_file"})
COLLECTOR_CACHE = 1 << 16
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class CollectorRedaction:
    config: RedactionConfig = field(default_factory=lambda: parse_redaction(None, "redaction").config)
    redact_zmq: bool = False


def _strings(where: str, value: Any, allow_none: bool = False) -> list[str] | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ValueError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return list(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def parse_redaction(raw: Any, where: str) -> CollectorRedaction:
    """``redaction:`` → CollectorRedaction; raises ValueError naming the key. The key itself is
    read here (``key_env``), or its file checked if it exists (created on first use otherwise)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in KEYS:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(KEYS))})")
    kw: dict[str, Any] = {}
    file_enabled = _bool(f"{where}.enabled", raw["enabled"]) if "enabled" in raw else None
    kw["enabled"] = settings.resolve("redact", None, {"redact": file_enabled})
    patterns = raw.get("patterns") or {}
    if not isinstance(patterns, Mapping):
        raise ValueError(f"{where}.patterns: expected a mapping of rule name to regex")
    for name, rx in patterns.items():
        if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
            raise ValueError(f"{where}.patterns: rule name {name!r} must match [A-Za-z0-9_.-]{{1,64}}")
        try:
            re.compile(rx)
        except (re.error, TypeError) as exc:
            raise ValueError(f"{where}.patterns.{name}: not a valid regex ({exc})") from None
    kw["patterns"] = dict(patterns)
    kw["allow_keys"] = _strings(f"{where}.allow_keys", raw.get("allow_keys"), allow_none=True)
    for key in ("deny_keys", "pseudonymize_keys", "disable"):
        if raw.get(key) is not None:
            kw[key] = tuple(_strings(f"{where}.{key}", raw[key]) or ())
    for name in kw.get("disable", ()):
        if name not in DETECTORS:
            raise ValueError(f"{where}.disable: unknown detector {name!r} (known: {', '.join(DETECTORS)})")
    redact_zmq = _bool(f"{where}.redact_zmq", raw["redact_zmq"]) if "redact_zmq" in raw else False
    key = settings.resolve("redact_key")
    if not key and raw.get("key_env") is not None:
        name = raw["key_env"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.key_env: expected an environment variable name, got {name!r}")
        key = os.environ.get(name, "").strip()
        if len(key.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"{where}.key_env: environment variable {name} is unset or shorter than "
                             f"{MIN_KEY_BYTES} bytes")
    if raw.get("key_file") is not None and not (isinstance(raw["key_file"], str) and raw["key_file"]):
        raise ValueError(f"{where}.key_file: expected a path, got {raw['key_file']!r}")
    key_file = settings.resolve("redact_key_file", None, {"redact_key_file": raw.get("key_file")})
    if key:
        cfg = RedactionConfig(pseudonym_key=key, **kw)
    else:
        _check_key_file(f"{where}.key_file", key_file)
        cfg = with_key(RedactionConfig(**kw), key_file)
    return CollectorRedaction(cfg, redact_zmq)


def _check_key_file(where: str, path: str) -> None:
    p = Path(path)
    if not p.exists():
        return  # created with a random key on the first pseudonym
    try:
        data = p.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path!r} ({exc.strerror})") from None
    if len(data) < MIN_KEY_BYTES:
        raise ValueError(f"{where}: {path!r} holds fewer than {MIN_KEY_BYTES} bytes")


class BatchRedactor:
    """Redacts decoded batches on receiver threads (any number; the Redactor is thread-safe)."""

    def __init__(self, cfg: CollectorRedaction | None = None) -> None:
        cfg = cfg or CollectorRedaction()
        # Every app's distinct values pass here: a larger memory of clean strings than an app's.
        self.redactor = Redactor(cfg.config, cache_size=COLLECTOR_CACHE)
        self.enabled = self.redactor.enabled
        self.redact_zmq = cfg.redact_zmq
        self._lock = threading.Lock()
        self._warned_off = False
        self._errors = 0
        self._records = 0
        self._fns: dict[str, Callable[[Any], Any]] = {
            "span": self.redactor.redact_span, "metric": self.redactor.redact_metric, "log": self.redactor.redact_log}

    def applies(self, source: str, requested: bool = False) -> bool:
        """``requested``: the frame carries ``wire.FLAG_REDACT`` (the app did not redact it)."""
        if requested and not self.enabled and not self._warned_off:
            self._warned_off = True
            log.warning("apps on this device leave redaction to the collector, but redaction is off here: "
                        "their records are stored as they were sent")
        return self.enabled and (source != "zmq" or self.redact_zmq or requested)

    def apply(self, kind: str, resource: dict[str, Any], records: list[Any]) -> tuple[dict[str, Any], list[Any], int]:
        """(resource, records, dropped): the redacted batch; records the redactor fails on are
        dropped and counted (``redaction_error``), never passed on as they were. Never raises."""
        fn = self._fns.get(kind)
        try:
            if fn is None:
                raise ValueError(f"unknown kind {kind!r}")
            resource = self.redactor.redact_resource(resource)
        except Exception as exc:
            log.warning("a %s batch of %d records dropped: redaction failed (%s)", kind, len(records),
                        type(exc).__name__)
            self._count(len(records), len(records))
            return {}, [], len(records)
        out: list[Any] = []
        bad = 0
        for rec in records:
            try:
                out.append(fn(rec))
            except Exception as exc:
                bad += 1
                log.debug("record dropped: redaction failed (%s)", type(exc).__name__)
        self._count(len(records), bad)
        return resource, out, bad

    def _count(self, records: int, errors: int) -> None:
        with self._lock:
            self._records += records
            self._errors += errors

    def counters(self) -> dict[str, Any]:
        """For the status row: per-rule counts only, never values (any thread)."""
        with self._lock:
            records, errors = self._records, self._errors
        return {"enabled": self.enabled, "redact_zmq": self.redact_zmq, "records": records,
                "redaction_error": errors, "redacted": self.redactor.counts()}
