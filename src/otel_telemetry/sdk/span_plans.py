"""The fast path for spans: one cached plan per span *shape*, applied on the thread that ends it.

Most spans an app ends repeat a few shapes: the same name, kind, status, scope, resource and
attribute keys; only the values differ. Everything that depends on the shape alone — category
and topic, the resource and scope fields, which attribute keys are plain or pseudonymised, whether
the name and scope strings are clean — is worked out once, on the sender thread, by the general
path (``convert._Converter``, ``Redactor.shape_pseudo_keys``) and kept in a plan (:meth:`learn`).

A later span of a known shape is converted by :meth:`end` on the thread that ends it, with dict
and set lookups only: no regex, no I/O, no lock. Every string value must already be known clean
(``Redactor.clean_values``: strings the detectors passed before), every other value a number,
every pseudonym already in the cache. Anything else — a new value, events, links, a status
message, a list value, user category rules, ``telemetry.category``/``telemetry.component``
attributes (their values pick the topic), a redaction callback — is not taken and goes to the
sender thread as a snapshot, where the general path scans it. Both paths produce the same records
(``tests/sdk/test_span_plans.py``).

``_fastspan.c`` is :meth:`SpanPlans.end` plus ``ReadyBatches.add`` in C, writing each record's
msgpack bytes at once: :meth:`SpanPlans.ender` hands it to span processors when it was built
(``setup.py``: optional) and the ``speedups`` setting is on. This module stays the reference and
the fallback; both write the same bytes.
"""

from __future__ import annotations

import itertools
from operator import itemgetter
from typing import Any

from .. import settings
from ..redact.redactor import Redactor
from .batches import ReadyBatches
from .snapshot import KIND_MEMBER, PINNED, SNAPSHOT_LEN, STATUS_MEMBER

try:
    from . import _fastspan
except ImportError:  # not built (no compiler at install time): the Python version below
    _fastspan = None  # type: ignore[assignment]

MAX_PLANS = 1024  # (name, attribute count) keys; the table starts again beyond
MAX_PER_KEY = 4  # plans per key: shapes told apart by kind, status code, scope and resource
_shape_ids = itertools.count(1)  # the wire's shape ids: unique per process, never reused
_ANY = (None,) * 11  # matches any span of its key in learn(), none in end(): the general path
_VALUE_KEYS = frozenset(("telemetry.category", "telemetry.component"))

# A plan, one of up to MAX_PER_KEY per (span name, number of attributes): (its group for
# ``batches`` (None: a shape that always takes the general path) (category, group
# key (topic, id(resource)), resource, shape id, shape (wire.KIND_SPAN_SHAPES: name, kind,
# status code, scope name, scope version, keys), pseudonyms per record), getters of the
# string, number and pseudonymised values (each None if there are none), and the SpanKind,
# StatusCode, scope and resource objects a span must have to use it, and the keys each getter
# fetches, as tuples, for ``_fastspan``)
Plan = tuple[Any, ...]


def _members(snap: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The SpanKind, StatusCode, scope and resource objects of a snapshot (None if unknown)."""
    try:
        return KIND_MEMBER[snap[6]], STATUS_MEMBER[snap[7]], PINNED[snap[12]], PINNED[snap[13]]
    except (KeyError, IndexError, TypeError):
        return None


def _same(plan: Plan, members: tuple[Any, ...] | None) -> bool:
    return members is not None and all(a is b for a, b in zip(plan[4:8], members, strict=True))


def speedups() -> Any:
    """The ``_fastspan`` module if it was built and the ``speedups`` setting is on, else None."""
    return _fastspan if _fastspan is not None and settings.resolve("speedups") else None


def _getter(keys: list[Any]) -> tuple[Any, list[Any]]:
    """(an itemgetter that always returns a tuple, or None; the keys of that tuple). itemgetter of
    one key returns the bare value, so one key is fetched twice (the shape names it twice too)."""
    if not keys:
        return None, []
    if len(keys) == 1:
        keys = keys * 2
    return itemgetter(*keys), keys


class SpanPlans:
    """Per-shape plans of one converter. ``general(snap)`` is the converter's general path
    without redaction (category, topic, resource, wire record), run once per new shape."""

    def __init__(self, general: Any, redactor: Redactor | None) -> None:
        self._general = general
        self._redactor = redactor
        self._plans: dict[tuple[Any, ...], tuple[Plan, ...]] = {}  # (name, attribute count) -> plans
        self._clean = redactor.clean_values if redactor is not None else None
        # value -> pseudonym; raises KeyError for a value not pseudonymised yet
        self._pseudo_cache = redactor.pseudonym_cache if redactor is not None else None
        self._pseudonym = self._pseudo_cache.__getitem__ if self._pseudo_cache is not None else None
        # Where ``end`` puts its records: the transport's ReadyBatches (set once it exists; it
        # survives fork, cleared in place).
        self.batches: ReadyBatches | None = None

    def ender(self, slow: Any) -> Any:
        """A ``_fastspan.Ender`` over these plans and ``batches`` (its ``end(span)`` is
        :meth:`end`; its ``on_end(span)`` calls ``slow(span)`` for a span not taken), or None
        when the C version is not built or the ``speedups`` setting is off."""
        c = speedups()
        if c is None or self.batches is None:
            return None
        return c.Ender(self._plans, self._clean, self._pseudo_cache, self.batches, slow)

    def count_pseudonyms(self, n: int) -> None:
        """Pseudonyms the fast path took from the cache, counted when their batch is encoded
        (any thread; the redactor keeps per-thread tables)."""
        if self._redactor is not None:
            self._redactor.count_pseudonyms(n)

    def end(self, span: Any) -> bool:
        """Called on the thread that ends a span: must not block. Converts a span of a known shape
        whose values are all known clean into its wire record and hands it to the batches; False
        means "not taken: snapshot it for the sender thread". Reads the SDK's private fields like
        ``snapshot.snapshot``; an AttributeError from an SDK change sends the caller to that path."""
        status = span._status
        if status._description or span._events._dq or span._links._dq:
            return False
        attrs = span._attributes._dict
        plans = self._plans.get((span._name, len(attrs)))
        if plans is None:
            return False
        # The plan of this kind, status, scope and resource (by identity: cheaper than ids in the key)
        kind, code, scope, res = span._kind, status._status_code, span._instrumentation_scope, span._resource
        for plan in plans:
            if plan[4] is kind and plan[5] is code and plan[6] is scope and plan[7] is res:
                break
        else:
            return False  # a shape not learnt (yet)
        group, sget, nget, pget, _, _, _, _, _, _, _ = plan
        if group is None:  # a shape that always takes the general path
            return False
        clean = self._clean
        try:  # a KeyError: same name and count, other keys (the getters cover every key)
            svals = sget(attrs) if sget is not None else ()
            nvals = nget(attrs) if nget is not None else ()
            if clean is not None:
                if not clean.issuperset(svals):
                    return False  # a string not known clean (or no longer a string): scan it
                sum(nvals)  # TypeError unless every one is still a number
            # KeyError too when a value was never pseudonymised: the general path keys it
            pvals = tuple(map(self._pseudonym, map(str, pget(attrs)))) if pget is not None else ()
        except (TypeError, KeyError):
            return False
        ctx, parent = span._context, span._parent  # SpanContext is a tuple: [0] trace id, [1] span id
        rec = (group[3], ctx[0].to_bytes(16, "big"), ctx[1], parent[1] if parent is not None else None,
               span._start_time, span._end_time, svals, nvals, pvals)
        return self.batches.add((group, rec))  # type: ignore[union-attr]

    def learn(self, items: list[Any]) -> None:
        """Sender thread, before the general path converts ``items``: make plans for span shapes
        not seen before."""
        plans = self._plans
        for snap in items:
            if snap.__class__ is not tuple or len(snap) != SNAPSHOT_LEN:
                continue
            name, msg, attrs, events, links = snap[0], snap[8], snap[9], snap[10], snap[11]
            if msg or events is not None or links is not None:
                continue
            key = (name, len(attrs))
            have = plans.get(key, ())
            members = _members(snap)
            if len(have) >= MAX_PER_KEY or any(p is _ANY or _same(p, members) for p in have):
                continue  # known (the first plan of these members wins), or enough of this key
            if not have and len(plans) >= MAX_PLANS:
                plans.clear()
            plans[key] = (*have, self._plan(snap, members))  # one store: readers see old or new

    def _plan(self, snap: tuple[Any, ...], members: tuple[Any, ...] | None) -> Plan:
        """The plan of a new shape, by the general path; one without a group (the span always
        takes the general path) if the shape's records depend on more than its shape."""
        if members is None:
            return _ANY
        attrs = snap[9]
        slow = (None, None, None, None, *members, (), (), ())
        if not _VALUE_KEYS.isdisjoint(attrs):
            return slow
        try:
            category, topic, kind, resource, rec = self._general(snap)
            pseudo: tuple[Any, ...] | None = ()
            if self._redactor is not None:
                pseudo = self._redactor.shape_pseudo_keys((rec[0], rec[12], rec[13]), tuple(attrs))
            if pseudo is None:
                return slow
            strs = [k for k, v in attrs.items() if k not in pseudo and v.__class__ is str]
            nums = [k for k, v in attrs.items() if k not in pseudo and v.__class__ is not str]
        except Exception:  # the general path will count whatever is wrong with this span
            return slow
        (sget, skeys), (nget, nkeys), (pget, pkeys) = _getter(strs), _getter(nums), _getter(list(pseudo))
        shape_id = next(_shape_ids)
        shape = (rec[0], rec[6], rec[7], rec[12], rec[13], [*skeys, *nkeys, *pkeys])
        group = (category, (topic, id(resource)), resource, shape_id, shape, len(pseudo))
        return (group, sget, nget, pget, *members, tuple(skeys), tuple(nkeys), tuple(pkeys))
