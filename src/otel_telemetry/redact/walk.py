"""The value walkers of :class:`~otel_telemetry.redact.Redactor`: attribute maps (the short paths
for known keys and the long way), nested values, events and links, and text with its two memories
(strings found clean, strings redacted). A mixin: the state lives in ``Redactor.__init__``."""

from __future__ import annotations

from typing import Any

import orjson

from .keys import _CACHE_STR_MAX, _JSON, _SCAN
from .scan import mark, plain, scan

MAX_DEPTH = 32
_DIRTY_STR_MAX = 1024
_mark = mark


class Walker:
    """Walks values for :class:`~otel_telemetry.redact.Redactor` (same threads, same rules)."""

    _add: Any
    _call: Any
    _callback: Any
    _classify: Any
    _keyed: Any
    _pseudonymize: Any
    _clean: set[Any]
    _dirty: dict[str, tuple[str, dict[str, int]]]
    _keys: dict[Any, int]
    _nkeys: dict[Any, int]
    _scan_keys: set[Any]
    _nscan_keys: set[Any]
    _pseudo_top: set[Any]
    _plain_or_pseudo: set[Any]
    _cache_max: int
    _on: frozenset[str]
    _custom: list[Any]

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
            elif act == _JSON:
                nv = self._json_doc(v, depth) if v.__class__ is str and v not in clean else v
                if cb is not None:
                    nv = self._call(str(k), nv)
            else:
                nv = self._keyed(act, v)
            if nv is not v:
                if out is None:
                    out = dict(m)
                out[k] = nv
        return m if out is None else out

    def _json_doc(self, v: str, depth: int) -> str:
        """A JSON document held in an attribute (``record_telemetry``'s ``data``): its keys get the
        attribute rules (``user_id`` a pseudonym, ``password`` redacted) and its strings the
        detectors; anything that is not JSON is scanned as text."""
        try:
            doc = orjson.loads(v)
        except orjson.JSONDecodeError:
            return self._text(v)
        red = self._value(doc, "telemetry.data", depth)
        if red is doc:
            self._remember(v)
            return v
        return orjson.dumps(red, default=str, option=orjson.OPT_NON_STR_KEYS).decode()

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
                        if len(clean) >= self._cache_max:
                            clean.clear()
                        clean.add(v)
                    elif v is not None:
                        return False
        except TypeError:  # an unhashable value (list, dict): the per-item loop
            return False
        return True

    def _simple_map(self, m: dict[Any, Any]) -> dict[Any, Any] | None:
        """Short path for top-level attributes whose keys are all known plain or pseudonymised ones
        and whose values are strings, numbers or None: the same dict when nothing changes, else one
        copy with the pseudonyms and redacted strings; None (take ``_map``) for anything else."""
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
                if c is str:
                    nv = self._text(v)
                    if nv is not v:
                        if out is None:
                            out = dict(m)
                        out[k] = nv
                elif not (c is int or c is float or c is bool or v is None):
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
            if len(clean) >= self._cache_max:
                clean.clear()
            clean.add(s)
            return True
        if s in self._dirty:
            return False
        hits: dict[str, int] = {}
        out = scan(s, self._on, self._custom, hits)
        if hits:
            self._keep_dirty(s, out, hits)
            return False
        self._remember(s)
        return True

    def _keep_dirty(self, s: str, out: str, hits: dict[str, int]) -> None:
        if len(s) <= _DIRTY_STR_MAX:
            dirty = self._dirty
            if len(dirty) >= self._cache_max // 8:
                dirty.clear()
            dirty[s] = (out, hits)

    def _remember(self, s: str) -> None:
        if len(s) <= _CACHE_STR_MAX:
            if len(self._clean) >= self._cache_max:
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
        seen = self._dirty.get(s)
        if seen is not None:
            self._add(seen[1])
            return seen[0]
        hits: dict[str, int] = {}
        out = self._scan(s, hits)
        if hits:
            self._add(hits)
            self._keep_dirty(s, out, hits)
            return out
        self._remember(s)
        return s

    def _scan(self, s: str, hits: dict[str, int]) -> str:
        """All detectors over ``s``; records {rule: n} in ``hits``. Pure: no shared state."""
        return scan(s, self._on, self._custom, hits)
