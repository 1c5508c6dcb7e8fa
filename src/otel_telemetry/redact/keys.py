"""Attribute-key rules of ``otel_telemetry.redact.Redactor``: classifying keys (plain, sensitive,
denied, not allowed, pseudonymised), replacing values by key, the keyed HMAC-SHA256 pseudonyms,
and the user callback. A mixin: the state lives in ``Redactor.__init__``."""

from __future__ import annotations

import fnmatch
import hmac
import re
from typing import Any

from . import rules
from .config import ENV_KEY, MIN_KEY_BYTES, load_key, log
from .scan import mark

PSEUDONYM_HEX = 24  # 96 bits of HMAC-SHA256
_CACHE_MAX = 4096
_CACHE_STR_MAX = 256

# Key actions (cached per key). _JSON: an attribute that holds a JSON document (record_telemetry's
# data and metadata), redacted as the map it encodes, by the same key rules as attributes.
_SCAN, _SENSITIVE, _DENIED, _NOT_ALLOWED, _PSEUDO, _JSON = 0, 1, 2, 3, 4, 5
JSON_ATTRS = frozenset(("telemetry.data", "telemetry.metadata"))
_KEY_RULE = {_SENSITIVE: "sensitive_key", _DENIED: "denied_key", _NOT_ALLOWED: "not_allowed"}
_ONE_PSEUDONYM = {"pseudonym": 1}
_mark = mark


class KeyRules:
    """Key classification and pseudonyms; mixed into :class:`~otel_telemetry.redact.Redactor`."""

    _text: Any
    _add: Any
    _callback: Any
    _lock: Any
    _keys: dict[Any, int]
    _nkeys: dict[Any, int]
    _scan_keys: set[Any]
    _nscan_keys: set[Any]
    _pseudo_top: set[Any]
    _plain_or_pseudo: set[Any]
    _pseudo_keys: frozenset[str]
    _pair_rx: Any = None  # _pseudo_pairs' pattern, built on first use
    _deny_exact: frozenset[str]
    _deny_glob: tuple[str, ...]
    _allow_exact: frozenset[str] | None
    _allow_prefix: tuple[str, ...] | None
    _hkey: bytes | None
    _key_file: str | None
    _pseudo_cache: dict[str, str]
    _cache_max: int
    _warned: bool
    _short: bool
    _ok: Any

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

    # ------------------------------------------------------------------ span shapes
    def shape_pseudo_keys(self, texts: tuple[Any, ...], keys: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """For ``span_plans`` (sender thread): a span shape whose fixed strings (``texts``: name,
        scope name, version) are clean and whose attribute keys are all plain or pseudonymised needs
        no redaction beyond its pseudonymised keys (returned) once every string value is in
        :attr:`clean_values`. None: this shape always takes ``redact_span``."""
        if not self._short:
            return None
        for t in texts:
            if t and not self._ok(t):
                return None
        pseudo = []
        for k in keys:
            act = self._keys.get(k)
            if act is None:
                act, k2 = self._classify(k, True)
                if k2 is not k:
                    return None
            if act == _PSEUDO:
                pseudo.append(k)
            elif act != _SCAN:
                return None
        return tuple(pseudo)

    def _pseudo_pairs(self, text: str) -> str:
        """``user_id=42``, ``user.id: 42`` and ``"user_id": "42"`` in free text (a log body):
        the value becomes its pseudonym, as the attribute would. Same thread rules as the rest."""
        rx = self._pair_rx
        if rx is None:
            keys = sorted(self._pseudo_keys, key=len, reverse=True)
            if not keys:
                return text
            alts = "|".join(re.escape(k).replace("_", "[_-]") for k in keys)
            rx = self._pair_rx = re.compile(
                r'(?i)(?<![\w.-])(["\']?)(?:' + alts + r')\1(\s*[:=]\s*)(["\']?)([^\s"\',;&)}\]]+)')
        if not rx.search(text):
            return text
        return rx.sub(lambda m: m.group(0)[:m.start(4) - m.start(0)] + self._pseudonymize(m.group(4)), text)

    def count_pseudonyms(self, n: int) -> None:
        """Count ``n`` pseudonyms taken from :attr:`pseudonym_cache` by the caller (its thread)."""
        if n:
            self._add({"pseudonym": n})

    # ------------------------------------------------------------------ keys
    def _classify(self, key: Any, top: bool) -> tuple[int, Any]:
        """(action, key to emit); cached unless the key itself held personal data."""
        ks = key if type(key) is str else str(key)
        norm = ks.lower().replace("-", "_")
        last = norm.rsplit(".", 1)[-1]
        if top and ks in JSON_ATTRS:
            act = _JSON
        elif norm in self._pseudo_keys or ks.lower() in self._pseudo_keys:
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
                if top:
                    self._pseudo_top.clear()
                    self._plain_or_pseudo.clear()
            cache[key] = act
            if act == _SCAN:
                scan.add(key)
            if top and act in (_SCAN, _PSEUDO):
                self._plain_or_pseudo.add(key)
                if act == _PSEUDO:
                    self._pseudo_top.add(key)
        return act, new_key

    def _pseudonymize(self, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [self._pseudonymize(x) for x in v]
        s = v if type(v) is str else str(v)
        out = self._pseudo_cache.get(s)
        if out is not None:
            self._add(_ONE_PSEUDONYM)
            return out
        if rules.PSEUDONYM_RE.fullmatch(s):  # already pseudonymised upstream (app side): keep it
            return s
        if self._hkey is None and self._key_file is not None:
            with self._lock:
                if self._key_file is not None:
                    self._hkey, self._key_file = load_key(self._key_file), None
        if self._hkey is None:
            if not self._warned:
                self._warned = True
                log.warning("no usable %s or key file (>= %d bytes): pseudonymised keys are redacted instead",
                            ENV_KEY, MIN_KEY_BYTES)
            self._add({"pseudonym_unkeyed": 1})
            return _mark("pseudonym_unkeyed")
        self._add(_ONE_PSEUDONYM)
        out = "ph_" + hmac.digest(self._hkey, s.encode("utf-8", "surrogatepass"), "sha256").hex()[:PSEUDONYM_HEX]
        if len(self._pseudo_cache) >= self._cache_max // 4:
            self._pseudo_cache.clear()
        self._pseudo_cache[s] = out
        return out
