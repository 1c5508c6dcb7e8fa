"""Redaction of personal data and secrets in wire record tuples, shared by app and collector.

``Redactor`` walks the SPAN / METRIC / LOG tuples of ``otel_telemetry.wire`` (and resource
dicts) and returns them with every string field scanned: names, attribute values (nested lists
and dicts, their keys too), events, links, status messages, log bodies, scope names. It runs on
the app's transport sender thread (``convert._Converter``) when the app's endpoint leaves the
device, and in the collector on OTLP input and on ZeroMQ frames an app flags ``FLAG_REDACT``
(``collector.redaction``); it never runs on an app thread. The walkers are in ``walk.py``. The app's span fast path
(``span_plans``) only reads what it learnt: :attr:`clean_values` and :attr:`pseudonym_cache`.

Built-in detectors (``DETECTORS``, in ``scan.py``), each replacing the match with
``[REDACTED:<rule>]``: url_credentials, private_key, jwt, bearer, basic_auth, api_key, kv_secret,
email, ipv6, card (Luhn-checked, known brand prefixes), ipv4 (loopback/unspecified kept), phone,
secret_token (long mixed-case high-entropy runs; hex ids, UUIDs and paths do not qualify).
Attribute keys decide too: sensitive names (password, token, cookie, ... on the last key segment)
and ``deny_keys`` are replaced whole; ``pseudonymize_keys`` become ``ph_`` + keyed HMAC-SHA256
(key sources: ``config.py``).

Copy-on-write: a record with nothing to redact comes back as the same object and nothing is
allocated; the caller's (the SDK's) dicts are never mutated. Strings found clean are remembered
in a bounded set and strings redacted in a bounded dict, so a repeated value (methods, routes,
hosts, a client's IP) costs one lookup; a span whose fields are all known-clean strings or numbers
takes a short path without copying anything.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from ..settings import truthy
from . import rules
from .config import ENV_ENABLED, ENV_KEY, MIN_KEY_BYTES, RedactionConfig
from .keys import _CACHE_MAX, KeyRules
from .scan import DETECTORS
from .walk import Walker

__all__ = ["DETECTORS", "ENV_ENABLED", "ENV_KEY", "MIN_KEY_BYTES", "RedactionConfig", "Redactor", "scan_bytes"]

_truthy = truthy


class Redactor(KeyRules, Walker):
    """Redacts wire tuples. Thread-safe: any number of sender/pipeline threads may share one.

    Methods never raise on odd values (unknown types become strings, depth is capped) and never
    log or store a redacted value; only per-rule counts are kept (:meth:`counts`).
    """

    def __init__(self, config: RedactionConfig | None = None, cache_size: int = _CACHE_MAX) -> None:
        """``cache_size``: most strings remembered clean (and pseudonyms cached). The app keeps the
        default; the collector, which sees every app's distinct values, holds more."""
        cfg = config or RedactionConfig()
        self._cache_max = max(16, cache_size)
        self.config = cfg
        self.enabled = bool(cfg.enabled)
        self._on = frozenset(d for d in DETECTORS if d not in set(cfg.disable))
        self._custom = [(name, re.compile(rx)) for name, rx in dict(cfg.patterns).items()]
        self._allow_exact = self._allow_prefix = None
        if cfg.allow_keys is not None:
            keys = [k.lower() for k in cfg.allow_keys]
            self._allow_exact = frozenset(k for k in keys if not k.endswith("*")) | rules.ALWAYS_ALLOWED
            self._allow_prefix = tuple(k.rstrip("*") for k in keys if k.endswith("*")) + ("telemetry.",)
        deny = [k.lower().replace("-", "_") for k in cfg.deny_keys]
        self._deny_exact = frozenset(k for k in deny if "*" not in k)
        self._deny_glob = tuple(k for k in deny if "*" in k)
        self._pseudo_keys = frozenset(k.lower() for k in cfg.pseudonymize_keys)
        raw_key = cfg.pseudonym_key if cfg.pseudonym_key is not None else os.environ.get(ENV_KEY)
        key = raw_key.encode() if isinstance(raw_key, str) else raw_key
        self._hkey: bytes | None = key if key and len(key) >= MIN_KEY_BYTES else None
        # No key given: the key file is read (or created) on the first pseudonym, not before.
        self._key_file = cfg.key_file if raw_key is None else None
        self._callback = cfg.callback
        self._short = self.enabled and cfg.callback is None  # the no-copy short paths apply
        self._lock = threading.Lock()
        _live.add(self)
        self._local = threading.local()  # per-thread {rule: n}: counting takes no lock
        self._all_counts: list[dict[str, int]] = []
        self._clean: set[Any] = set()
        # Strings that needed redacting -> (redacted text, {rule: n}): a value seen again (a client
        # IP, a user agent with a version that looks like an address) costs one lookup, not a scan.
        self._dirty: dict[str, tuple[str, dict[str, int]]] = {}
        self._keys: dict[Any, int] = {}  # top-level attribute keys -> action
        self._nkeys: dict[Any, int] = {}  # keys of nested maps (no allow-list) -> action
        self._scan_keys: set[Any] = set()  # the _SCAN subsets of the two above
        self._nscan_keys: set[Any] = set()
        self._pseudo_top: set[Any] = set()  # top-level keys pseudonymised, and those + _scan_keys
        self._plain_or_pseudo: set[Any] = set()
        self._pseudo_cache: dict[str, str] = {}
        self._warned = False

    @classmethod
    def from_env(cls, config: RedactionConfig | None = None, environ: Mapping[str, str] | None = None) -> Redactor:
        """``OTEL_TELEMETRY_REDACT`` (on/off, default on) over ``config.enabled``;
        ``OTEL_TELEMETRY_REDACT_KEY`` when the config carries no key."""
        env = os.environ if environ is None else environ
        cfg = config or RedactionConfig()
        changes: dict[str, Any] = {}
        if env.get(ENV_ENABLED) is not None:
            changes["enabled"] = _truthy(env[ENV_ENABLED])
        if cfg.pseudonym_key is None:
            changes["pseudonym_key"] = env.get(ENV_KEY) or b""
        return cls(dataclasses.replace(cfg, **changes))

    @property
    def clean_values(self) -> set[Any]:
        """The live set of strings the detectors passed (and numbers seen): read, never written, by
        ``span_plans`` on the sender thread. Cleared in place when full, never replaced."""
        return self._clean

    @property
    def pseudonym_cache(self) -> dict[str, str]:
        """The live value -> pseudonym cache (same rules as :attr:`clean_values`)."""
        return self._pseudo_cache

    # ------------------------------------------------------------------ counts
    def counts(self) -> dict[str, int]:
        """Replacements so far per rule (a copy); any thread."""
        total: dict[str, int] = {}
        with self._lock:
            tables = list(self._all_counts)
        for table in tables:
            for rule, n in dict(table).items():  # dict() copies atomically; only its thread writes
                total[rule] = total.get(rule, 0) + n
        return total

    def _add(self, hits: Mapping[str, int]) -> None:
        table = getattr(self._local, "counts", None)
        if table is None:
            table = self._local.counts = {}
            with self._lock:
                self._all_counts.append(table)
        for rule, n in hits.items():
            table[rule] = table.get(rule, 0) + n

    # ------------------------------------------------------------------ records
    def redact_span(self, rec: Any) -> Any:
        """SPAN tuple -> SPAN tuple (the same object when nothing changed). Sender/pipeline thread."""
        if not self.enabled:
            return rec
        (name, tid, sid, parent, start, end, kind, code, msg, attrs, events, links, scope, sver) = rec
        if self._short and not msg and not events and not links:
            # The usual span: known-clean strings and numbers only -> the same tuple, no copies.
            clean = self._clean
            try:
                if (name in clean or self._ok(name)) and (not scope or scope in clean or self._ok(scope)) and (
                        not sver or sver in clean or self._ok(sver)):
                    if not attrs or self._quiet_map(attrs, self._scan_keys):
                        return rec
                    # Known keys, string and number values: one pass with the pseudonyms and the
                    # redacted values (each string scanned once, then remembered either way).
                    a2 = self._simple_map(attrs)
                    if a2 is attrs:
                        return rec
                    if a2 is not None:
                        return (name, tid, sid, parent, start, end, kind, code, msg, a2, events, links, scope, sver)
            except TypeError:  # an unhashable name (collector input): the long way
                pass
        clean = self._clean if self._callback is None else ()
        n2 = name if type(name) is str and name in clean else self._field(name, "span.name")
        m2 = self._field(msg, "status.message") if msg else msg
        a2 = self._map(attrs, 0, True) if attrs else attrs
        e2 = self._triples(events, True) if events else events
        l2 = self._triples(links, False) if links else links
        s2 = scope if not scope or (type(scope) is str and scope in clean) else self._field(scope, "scope.name")
        v2 = sver if not sver or (type(sver) is str and sver in clean) else self._field(sver, "scope.version")
        if n2 is name and m2 is msg and a2 is attrs and e2 is events and l2 is links and s2 is scope \
                and v2 is sver:
            return rec
        return (n2, tid, sid, parent, start, end, kind, code, m2, a2, e2, l2, s2, v2)

    def redact_metric(self, rec: Any) -> Any:
        """METRIC tuple -> METRIC tuple (same object when nothing changed). Sender/pipeline thread."""
        if not self.enabled:
            return rec
        out = list(rec)
        for i, label in ((0, "metric.name"), (1, "metric.description"), (2, "metric.unit"), (3, "metric.type"),
                         (9, "scope.name"), (10, "scope.version")):
            if out[i]:
                out[i] = self._field(out[i], label)
        if out[7]:
            out[7] = self._map(out[7], 0, True)
        if out[8]:
            out[8] = self._value(out[8], "metric.extra", 0)
        return rec if all(a is b for a, b in zip(out, rec, strict=True)) else tuple(out)

    def redact_log(self, rec: Any) -> Any:
        """LOG tuple -> LOG tuple (same object when nothing changed). Sender/pipeline thread."""
        if not self.enabled:
            return rec
        if self._short:
            ok = self._ok
            _t, _o, _n, sev, body, attrs, _tr, _sp, event, scope, sver = rec
            if (body is None or (ok(body) and self._pseudo_pairs(body) is body)) and (not sev or ok(sev)) and (
                    not event or ok(event)) and (not scope or ok(scope)) and (not sver or ok(sver)) and (
                    not attrs or self._quiet_map(attrs, self._scan_keys)):
                return rec
        out = list(rec)
        for i, label in ((3, "log.severity_text"), (8, "log.event_name"), (9, "scope.name"), (10, "scope.version")):
            if out[i]:
                out[i] = self._field(out[i], label)
        if out[4] is not None:
            out[4] = self._value(out[4], "log.body", 0)
            if out[4].__class__ is str:  # key=value pairs of pseudonymised keys, as attributes have them
                out[4] = self._pseudo_pairs(out[4])
            if self._callback is not None:
                out[4] = self._call("log.body", out[4])
        if out[5]:
            out[5] = self._map(out[5], 0, True)
        return rec if all(a is b for a, b in zip(out, rec, strict=True)) else tuple(out)

    def redact_resource(self, resource: Any) -> Any:
        """Resource attributes -> the same dict, or a redacted copy. Sender/pipeline thread."""
        if not self.enabled or not resource:
            return resource
        return self._map(resource, 0, True)

    def redact_text(self, text: str) -> str:
        """One free-text string through the detectors (no key rules)."""
        return self._text(text) if self.enabled else text

    def find(self, text: str) -> dict[str, int]:
        """Detector hits in ``text`` ({rule: n}); counts nothing. For tests and audits of stored bytes."""
        hits: dict[str, int] = {}
        self._scan(text, hits)
        return hits

def scan_bytes(redactor: Redactor, data: bytes) -> dict[str, int]:
    """Detector hits in raw bytes (a database file, a WAL, a payload), read as latin-1 so every
    byte maps to one character; the acceptance check of "zero hits in the stored bytes". A value
    cut at a page boundary inside a marker or right after its key reads as the marker."""
    text = _CUT_AFTER_KEY.sub(r"\1[REDACTED", _CUT_MARKER.sub("[REDACTED", data.decode("latin-1")))
    hits = redactor.find(text)
    if hits.get("secret_token"):
        again = redactor.find(_HEX_ID.sub("\x00", text)).get("secret_token", 0)
        if again:
            hits["secret_token"] = again
        else:
            del hits["secret_token"]
    return hits


# A value cut off by binary: SQLite keeps a long value's first part in its B-tree page and the rest
# on an overflow page, after a 4-byte page number (first byte 0 below 16M pages), so in the raw
# file "password=[REDACTED:kv_secret]" can read "password=[R\x00\x00\x00\x1e..." or
# "password=\x00\x00\x00$...". A cut inside a marker, or right after a key and its separator,
# reads as the marker; the bytes after the cut are not the value. (A cut inside a real value
# still shows the part before it, which the detectors still see.)
# Two passes, each pattern led by a literal or a set, so the engine skips ahead fast.
_CUT_MARKER = re.compile(r"\[(?:R(?:E(?:D(?:A(?:C(?:T(?:E(?:D)?)?)?)?)?)?)?)?(?=[\x00-\x08])")
_CUT_AFTER_KEY = re.compile(r"([=:\"'\s])(?=[\x00-\x08])")
# Columns glued together: SQLite stores a record's values back to back after a header of
# serial-type bytes, and some of those bytes read as letters. ".YP" + "logerror_patterns…" + a
# trace id and span id in hex is one long mixed-case run with digits that no stored value holds
# (seen in a WAL during a test run). Ids are lowercase hex; a random mixed-case token holds 16
# of those in a row once in about 10^9, so a secret_token hit counts only with them cut out.
_HEX_ID = re.compile(r"[0-9a-f]{16,}")


_live: weakref.WeakSet[Redactor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A parent thread (the sender, counting) may have held the lock at fork: it would stay held.
    for r in list(_live):
        r._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
