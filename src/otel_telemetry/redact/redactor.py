"""Redaction of personal data and secrets in wire record tuples, shared by app and collector.

``Redactor`` walks the SPAN / METRIC / LOG tuples of ``otel_telemetry.wire`` (and resource
dicts) and returns them with every string field scanned: names, attribute values (nested lists
and dicts, their keys too), events, links, status messages, log bodies, scope names. It runs on
the app's transport sender thread (``convert._Converter``) and in the collector on OTLP input
(``collector.redaction``); it never runs on an app thread. The app's span fast path
(``span_plans``) only reads what it learnt: :attr:`clean_values` and :attr:`pseudonym_cache`.

Built-in detectors (``DETECTORS``, in ``redact_scan``), each replacing the match with
``[REDACTED:<rule>]``: url_credentials, private_key, jwt, bearer, basic_auth, api_key, kv_secret,
email, ipv6, card (Luhn-checked, known brand prefixes), ipv4 (loopback/unspecified kept), phone,
secret_token (long mixed-case high-entropy runs; hex ids, UUIDs and paths do not qualify).
Attribute keys decide too: sensitive names (password, token, cookie, ... on the last key segment)
and ``deny_keys`` are replaced whole; ``pseudonymize_keys`` become ``ph_`` + keyed HMAC-SHA256
(key sources: ``redact_config``).

Copy-on-write: a record with nothing to redact comes back as the same object and nothing is
allocated; the caller's (the SDK's) dicts are never mutated. Strings found clean are remembered
in a bounded set, so repeated values (methods, routes, hosts) cost one set lookup; a span whose
fields are all known-clean strings or numbers takes a short path without copying anything.
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
from .keys import _CACHE_MAX, _CACHE_STR_MAX, _SCAN, KeyRules
from .scan import DETECTORS, mark, plain, scan

__all__ = ["DETECTORS", "ENV_ENABLED", "ENV_KEY", "MIN_KEY_BYTES", "RedactionConfig", "Redactor", "scan_bytes"]

MAX_DEPTH = 32
_mark = mark
_truthy = truthy


class Redactor(KeyRules):
    """Redacts wire tuples. Thread-safe: any number of sender/pipeline threads may share one.

    Methods never raise on odd values (unknown types become strings, depth is capped) and never
    log or store a redacted value; only per-rule counts are kept (:meth:`counts`).
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        cfg = config or RedactionConfig()
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
                        not sver or sver in clean or self._ok(sver)) and (
                        not attrs or self._quiet_map(attrs, self._scan_keys)):
                    return rec
                if attrs and self._pseudo_top:
                    a2 = self._pseudo_map(attrs)
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
            if (ok(body) or body is None) and (not sev or ok(sev)) and (not event or ok(event)) and (
                    not scope or ok(scope)) and (not sver or ok(sver)) and (
                    not attrs or self._quiet_map(attrs, self._scan_keys)):
                return rec
        out = list(rec)
        for i, label in ((3, "log.severity_text"), (8, "log.event_name"), (9, "scope.name"), (10, "scope.version")):
            if out[i]:
                out[i] = self._field(out[i], label)
        if out[4] is not None:
            out[4] = self._value(out[4], "log.body", 0)
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

    # ------------------------------------------------------------------ walkers
    def _field(self, v: Any, label: str) -> Any:
        out = self._text(v) if type(v) is str else self._value(v, label, 0)
        if self._callback is not None:
            out = self._call(label, out)
        return out

    def _triples(self, items: Any, named: bool) -> Any:
        """Events (name, ts, attrs) or links (trace, span, attrs); the name is text for events."""
        out = None
        for i, item in enumerate(items):
            try:
                a, b, c = item
            except (TypeError, ValueError):
                new = self._value(item, "span.item", 1)
            else:
                a2 = self._field(a, "event.name") if named and a else a
                c2 = self._map(c, 1, True) if isinstance(c, dict) and c else self._value(c, "attrs", 1)
                new = item if a2 is a and c2 is c else (a2, b, c2)
            if new is not item:
                if out is None:
                    out = list(items)
                out[i] = new
        return items if out is None else out

    def _map(self, m: Any, depth: int, top: bool) -> Any:
        if not isinstance(m, dict):
            return self._value(m, "attrs", depth)
        keys, clean, cb = (self._keys if top else self._nkeys), self._clean, self._callback
        if cb is None and self._quiet_map(m, self._scan_keys if top else self._nscan_keys):
            return m
        out: dict[Any, Any] | None = None
        for k, v in m.items():
            act = keys.get(k)
            if act is None:
                act, k2 = self._classify(k, top)
                if k2 is not k:  # the key itself held personal data
                    if out is None:
                        out = dict(m)
                    del out[k]
                    out[k2] = self._value(v, k2, depth + 1) if act == _SCAN else self._keyed(act, v)
                    continue
            if act == _SCAN:
                if v.__class__ is str:
                    if v in clean:
                        if cb is None:
                            continue
                        nv = v
                    else:
                        nv = self._text(v)
                elif v is None or v.__class__ in (int, float, bool):
                    if cb is None:
                        continue
                    nv = v
                else:
                    nv = self._value(v, k, depth + 1)
                if cb is not None:
                    nv = self._call(str(k), nv)
            else:
                nv = self._keyed(act, v)
            if nv is not v:
                if out is None:
                    out = dict(m)
                out[k] = nv
        return m if out is None else out

    def _quiet_map(self, m: dict[Any, Any], scan_keys: set[Any]) -> bool:
        """Short path: every key is a known plain key and every value a number, None or a string
        the detectors pass (remembered). False means "take the per-item loop", not "has PII"."""
        if not scan_keys.issuperset(m):
            return False
        clean = self._clean  # known-clean strings, and numbers seen (they are never scanned)
        try:
            for v in m.values():
                if v not in clean:
                    c = v.__class__
                    if c is str:
                        if not self._quiet(v):
                            return False
                    elif c is int or c is float or c is bool:
                        if len(clean) >= _CACHE_MAX:
                            clean.clear()
                        clean.add(v)
                    elif v is not None:
                        return False
        except TypeError:  # an unhashable value (list, dict): the per-item loop
            return False
        return True

    def _pseudo_map(self, m: dict[Any, Any]) -> dict[Any, Any] | None:
        """Short path for attributes with ids to pseudonymise (``user.id``): every key a known plain
        or pseudonymised one, every other value clean -> one copy with the pseudonyms; else None."""
        if not self._plain_or_pseudo.issuperset(m):
            return None
        pseudo, clean = self._pseudo_top, self._clean
        out: dict[Any, Any] | None = None
        for k, v in m.items():
            if k in pseudo:
                if v is not None:
                    if out is None:
                        out = dict(m)
                    out[k] = self._pseudonymize(v)
            elif v not in clean:
                c = v.__class__
                if not ((c is str and self._quiet(v)) or c is int or c is float or c is bool or v is None):
                    return None
        return m if out is None else out

    def _ok(self, v: Any) -> bool:
        """``v`` is a str the detectors pass (then remembered)."""
        return v.__class__ is str and (v in self._clean or self._quiet(v))

    def _quiet(self, s: str) -> bool:
        """No detector hit in ``s`` (then remembered). Short ASCII text without the characters
        any detector needs is settled by ``redact_scan.plain`` without a regex."""
        if len(s) < 20 and s.isascii() and not self._custom and "xox" not in s and plain(s):
            clean = self._clean
            if len(clean) >= _CACHE_MAX:
                clean.clear()
            clean.add(s)
            return True
        hits: dict[str, int] = {}
        scan(s, self._on, self._custom, hits)
        if hits:
            return False
        self._remember(s)
        return True

    def _remember(self, s: str) -> None:
        if len(s) <= _CACHE_STR_MAX:
            if len(self._clean) >= _CACHE_MAX:
                self._clean.clear()
            self._clean.add(s)

    def _value(self, v: Any, key: Any, depth: int) -> Any:
        if isinstance(v, str):
            return self._text(v if type(v) is str else str(v))
        if v is None or isinstance(v, (int, float, bool)):
            return v
        if depth >= MAX_DEPTH:
            self._add({"max_depth": 1})
            return _mark("max_depth")
        if isinstance(v, dict):
            return self._map(v, depth + 1, False)
        if isinstance(v, (list, tuple)):
            out = None
            for i, x in enumerate(v):
                nx = self._value(x, key, depth + 1)
                if nx is not x:
                    if out is None:
                        out = list(v)
                    out[i] = nx
            if out is None:
                return v
            return tuple(out) if isinstance(v, tuple) else out
        if isinstance(v, (set, frozenset)):
            return [self._value(x, key, depth + 1) for x in v]
        if isinstance(v, (bytes, bytearray, memoryview)):
            text = bytes(v).decode("utf-8", "replace")
            red = self._text(text)
            return v if red is text else red
        try:
            text = str(v)  # what wire._default would send
        except Exception:
            return _mark("unprintable")
        return self._text(text)

    # ------------------------------------------------------------------ text
    def _text(self, s: str) -> str:
        if s in self._clean:
            return s
        hits: dict[str, int] = {}
        out = self._scan(s, hits)
        if hits:
            self._add(hits)
            return out
        self._remember(s)
        return s

    def _scan(self, s: str, hits: dict[str, int]) -> str:
        """All detectors over ``s``; records {rule: n} in ``hits``. Pure: no shared state."""
        return scan(s, self._on, self._custom, hits)


def scan_bytes(redactor: Redactor, data: bytes) -> dict[str, int]:
    """Detector hits in raw bytes (a database file, a WAL, a payload), read as latin-1 so every
    byte maps to one character; the acceptance check of "zero hits in the stored bytes". A value
    cut at a page boundary inside a marker or right after its key reads as the marker."""
    text = _CUT_MARKER.sub("[REDACTED", data.decode("latin-1"))
    return redactor.find(_CUT_AFTER_KEY.sub(r"\1[REDACTED", text))


# A value cut off by binary: SQLite keeps a long value's first part in its B-tree page and the rest
# on an overflow page, after a 4-byte page number (first byte 0 below 16M pages), so in the raw
# file "password=[REDACTED:kv_secret]" can read "password=[R\x00\x00\x00\x1e..." or
# "password=\x00\x00\x00$...". A cut inside a marker, or right after a key and its separator,
# reads as the marker; the bytes after the cut are not the value. (A cut inside a real value
# still shows the part before it, which the detectors still see.)
# Two passes, each pattern led by a literal or a set, so the engine skips ahead fast.
_CUT_MARKER = re.compile(r"\[(?:R(?:E(?:D(?:A(?:C(?:T(?:E(?:D)?)?)?)?)?)?)?)?(?=[\x00-\x08])")
_CUT_AFTER_KEY = re.compile(r"([=:\"'\s])(?=[\x00-\x08])")


_live: weakref.WeakSet[Redactor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A parent thread (the sender, counting) may have held the lock at fork: it would stay held.
    for r in list(_live):
        r._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
