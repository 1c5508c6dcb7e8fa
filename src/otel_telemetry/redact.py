"""Redaction of personal data and secrets in wire record tuples, shared by app and collector.

``Redactor`` walks the SPAN / METRIC / LOG tuples of ``otel_telemetry.wire`` (and resource
dicts) and returns them with every string field scanned: names, attribute values (nested lists
and dicts, their keys too), events, links, status messages, log bodies, scope names. It runs on
the app's transport sender thread and in the collector pipeline; it never runs on an app thread.

Built-in detectors (``DETECTORS``), each replacing the match with ``[REDACTED:<rule>]``:
url_credentials, private_key, jwt, bearer, basic_auth, api_key, kv_secret, email, ipv6, card
(Luhn-checked, known brand prefixes), ipv4 (loopback/unspecified kept), phone, secret_token
(long mixed-case high-entropy runs; hex ids, UUIDs and paths do not qualify). Attribute keys
decide too: sensitive names (password, token, cookie, ... on the last key segment) and
``deny_keys`` are replaced whole; ``pseudonymize_keys`` become ``ph_`` + keyed HMAC-SHA256.

Copy-on-write: a record with nothing to redact comes back as the same object and nothing is
allocated; the caller's (the SDK's) dicts are never mutated. Strings found clean are remembered
in a bounded set, so repeated values (methods, routes, hosts) cost one set lookup.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import redact_rules as rules

log = logging.getLogger("otel_telemetry.redact")

ENV_ENABLED = "OTEL_TELEMETRY_REDACT"
ENV_KEY = "OTEL_TELEMETRY_REDACT_KEY"
MIN_KEY_BYTES = 16
PSEUDONYM_HEX = 24  # 96 bits of HMAC-SHA256
MAX_DEPTH = 32
_CACHE_MAX = 4096
_CACHE_STR_MAX = 256

DETECTORS: tuple[str, ...] = (
    "url_credentials", "private_key", "jwt", "bearer", "basic_auth", "api_key", "kv_secret", "email",
    "ipv6", "card", "ipv4", "phone", "secret_token",
)

# Key actions (cached per key).
_SCAN, _SENSITIVE, _DENIED, _NOT_ALLOWED, _PSEUDO = 0, 1, 2, 3, 4
_KEY_RULE = {_SENSITIVE: "sensitive_key", _DENIED: "denied_key", _NOT_ALLOWED: "not_allowed"}


def _mark(rule: str) -> str:
    return f"[REDACTED:{rule}]"


@dataclass(frozen=True)
class RedactionConfig:
    """Settings of a :class:`Redactor`; every field has a safe default (redaction on)."""

    enabled: bool = True
    patterns: Mapping[str, str] = field(default_factory=dict)  # extra {rule name: regex}
    allow_keys: Collection[str] | None = None  # allow-list mode: only these keys keep values ("x.*" ok)
    deny_keys: Collection[str] = ()  # redacted whole: full key, last segment, or glob ("*.email")
    callback: Callable[[str, Any], Any] | None = None  # (key, value) -> value, after built-ins
    pseudonymize_keys: Collection[str] = rules.DEFAULT_PSEUDONYMIZE_KEYS
    pseudonym_key: str | bytes | None = None  # HMAC secret; None -> env OTEL_TELEMETRY_REDACT_KEY
    disable: Collection[str] = ()  # built-in detector names to switch off (see DETECTORS)


def _truthy(raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("0", "false", "no", "off", "disabled"):
        return False
    if v not in ("1", "true", "yes", "on", "enabled", ""):
        log.warning("%s=%r not understood; redaction stays on", ENV_ENABLED, raw)
    return True


class Redactor:
    """Redacts wire tuples. Thread-safe: any number of sender/pipeline threads may share one.

    Methods never raise on odd values (unknown types become strings, depth is capped) and never
    log or store a redacted value; only per-rule counts are kept (:meth:`counts`).
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        cfg = config or RedactionConfig()
        self.config = cfg
        self.enabled = bool(cfg.enabled)
        self._on = {d for d in DETECTORS if d not in set(cfg.disable)}
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
        self._weak_key = bool(key) and self._hkey is None
        self._callback = cfg.callback
        self._lock = threading.Lock()
        self._local = threading.local()  # per-thread {rule: n}: counting takes no lock
        self._all_counts: list[dict[str, int]] = []
        self._clean: set[str] = set()
        self._keys: dict[Any, int] = {}  # top-level attribute keys -> action
        self._nkeys: dict[Any, int] = {}  # keys of nested maps (no allow-list) -> action
        self._scan_keys: set[Any] = set()  # the _SCAN subsets of the two above
        self._nscan_keys: set[Any] = set()
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
        if cb is None and self._all_clean(m, self._scan_keys if top else self._nscan_keys):
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

    def _all_clean(self, m: dict[Any, Any], scan_keys: set[Any]) -> bool:
        """Fast path, mostly in C: every key is a known plain key and every value a number or a
        string the detectors pass. False means "take the per-item loop", not "has PII"."""
        if not scan_keys.issuperset(m):
            return False
        try:
            miss = set(m.values())
        except TypeError:  # a list/dict value
            return False
        miss -= self._clean
        for v in miss:
            c = v.__class__
            if c is str:
                hits: dict[str, int] = {}
                self._scan(v, hits)
                if hits:
                    return False
                self._remember(v)
            elif not (v is None or c is int or c is float or c is bool):
                return False
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

    def _keyed(self, act: int, v: Any) -> Any:
        if v is None:
            return v
        if act == _PSEUDO:
            return self._pseudonymize(v)
        rule = _KEY_RULE[act]
        self._add({rule: 1})
        return _mark(rule)

    def _call(self, key: str, value: Any) -> Any:
        try:
            return self._callback(key, value)  # type: ignore[misc]
        except Exception:
            self._add({"callback_error": 1})
            return _mark("callback_error")

    # ------------------------------------------------------------------ keys
    def _classify(self, key: Any, top: bool) -> tuple[int, Any]:
        """(action, key to emit); cached unless the key itself held personal data."""
        ks = key if type(key) is str else str(key)
        norm = ks.lower().replace("-", "_")
        last = norm.rsplit(".", 1)[-1]
        if norm in self._pseudo_keys or ks.lower() in self._pseudo_keys:
            act = _PSEUDO
        elif norm in self._deny_exact or last in self._deny_exact or any(
                fnmatch.fnmatchcase(norm, g) for g in self._deny_glob):
            act = _DENIED
        elif (last in rules.SENSITIVE_SEGMENTS or norm in rules.SENSITIVE_FULL
              or last.endswith(rules.SENSITIVE_SUFFIXES)):
            act = _SENSITIVE
        elif top and self._allow_exact is not None and ks.lower() not in self._allow_exact \
                and not ks.lower().startswith(self._allow_prefix or ()):
            act = _NOT_ALLOWED
        else:
            act = _SCAN
        new_key = self._text(ks) if type(key) is str else key
        if new_key is key:
            cache, scan = (self._keys, self._scan_keys) if top else (self._nkeys, self._nscan_keys)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
                scan.clear()
            cache[key] = act
            if act == _SCAN:
                scan.add(key)
        return act, new_key

    def _pseudonymize(self, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [self._pseudonymize(x) for x in v]
        s = v if type(v) is str else str(v)
        if rules.PSEUDONYM_RE.fullmatch(s):  # already pseudonymised upstream (app side): keep it
            return s
        if self._hkey is None:
            if not self._warned:
                self._warned = True
                log.warning("no usable %s (>= %d bytes): pseudonymised keys are redacted instead",
                            ENV_KEY, MIN_KEY_BYTES)
            self._add({"pseudonym_unkeyed": 1})
            return _mark("pseudonym_unkeyed")
        self._add({"pseudonym": 1})
        out = self._pseudo_cache.get(s)
        if out is None:
            out = "ph_" + hmac.digest(self._hkey, s.encode("utf-8", "surrogatepass"), "sha256").hex()[:PSEUDONYM_HEX]
            if len(self._pseudo_cache) >= 1024:
                self._pseudo_cache.clear()
            self._pseudo_cache[s] = out
        return out

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
        on = self._on
        if len(s) >= 6:
            b = s.encode("utf-8", "ignore")
            nd = len(b) - len(b.translate(None, b"0123456789"))  # digit count, in C
            numeric = nd >= 7 or (nd >= 4 and s.count(".") >= 3)  # phone/card need 7+, IPv4 4+
            if "@" in s and "://" in s and "url_credentials" in on:
                s = _sub(rules.URL_CREDENTIALS, s, "url_credentials", hits, keep=1, tail="@")
            if "PRIVATE KEY" in s and "private_key" in on:
                s = _sub(rules.PRIVATE_KEY, s, "private_key", hits)
            if "eyJ" in s and "jwt" in on:
                s = _sub(rules.JWT, s, "jwt", hits)
            low = s.lower()
            if ("earer" in low or "token" in low) and "bearer" in on:
                s = _sub(rules.BEARER, s, "bearer", hits, keep=1, check=rules.bearer_ok, sep=" ")
            if "basic" in low and "basic_auth" in on:
                s = _sub(rules.BASIC, s, "basic_auth", hits, keep=1, check=rules.basic_ok, sep=" ")
            if len(s) >= 20 and "api_key" in on:
                s = _sub(rules.API_KEY, s, "api_key", hits)
            if ("=" in s or ":" in s) and "kv_secret" in on and rules.KV_PRE.search(low):
                s = _sub(rules.KV_SECRET, s, "kv_secret", hits, keep=1)
            if ("@" in s or "%40" in s) and "email" in on:
                s = _sub(rules.EMAIL, s, "email", hits)
            if ("::" in s or s.count(":") >= 7) and "ipv6" in on:
                s = _sub(rules.IPV6_CANDIDATE, s, "ipv6", hits, check=rules.ipv6_ok)
            if numeric:
                if "card" in on:
                    s = _sub(rules.CARD, s, "card", hits, check=rules.card_ok)
                if "." in s and "ipv4" in on:
                    s = _sub(rules.IPV4, s, "ipv4", hits, check=rules.ipv4_ok)
                if "phone" in on:
                    s = _sub(rules.PHONE, s, "phone", hits, check=rules.phone_ok)
            if len(s) >= 32 and "secret_token" in on:
                s = _sub(rules.SECRET_RUN, s, "secret_token", hits, check=rules.entropy_ok)
        for name, rx in self._custom:
            s = _sub(rx, s, name, hits)
        return s


def _sub(rx: re.Pattern[str], s: str, rule: str, hits: dict[str, int], keep: int = 0,
         check: Callable[[re.Match[str]], bool] | None = None, tail: str = "", sep: str = "") -> str:
    """Replace matches of ``rx`` (that pass ``check``) by the rule's marker, keeping group ``keep``."""
    if rx.search(s) is None:  # the common case: no closure, no new string
        return s
    mark = _mark(rule)

    def repl(m: re.Match[str]) -> str:
        if check is not None and not check(m):
            return m.group(0)
        hits[rule] = hits.get(rule, 0) + 1
        return (m.group(keep) + sep if keep else "") + mark + tail

    return rx.sub(repl, s)


def scan_bytes(redactor: Redactor, data: bytes) -> dict[str, int]:
    """Detector hits in raw bytes (a database file, a WAL, a payload), read as latin-1 so every
    byte maps to one character; the acceptance check of "zero hits in the stored bytes"."""
    return redactor.find(data.decode("latin-1"))

