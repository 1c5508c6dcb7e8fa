"""The sender thread's conversion of queued items into messages: convert (categorise, redact),
group by topic and resource, msgpack-encode; a mixin of ``sender.Sender`` (its state lives in
``Transport``). Runs on the sender thread only."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import wire
from .batches import pop_up_to

log = logging.getLogger("otel_telemetry.sdk.transport")

ENCODE_ERROR = "encode_error"

# (category, topic bytes, kind, resource attrs, record tuple)
Prepared = tuple[str, bytes, int, dict[str, Any], tuple[Any, ...]]
Converter = Callable[[Any], Prepared]


class Dropped(Exception):
    """Raised by a converter: count this item as dropped under (``category``, ``reason``)."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category, self.reason = category, reason


class Preparer:
    """``_prepare``: up to one batch of queued items → messages (not yet numbered)."""

    _convert: Converter
    _learn: Callable[[list[Any]], None] | None
    _batch: int
    _publisher: bytes
    _lock: threading.Lock
    _dropped: dict[tuple[str, str], int]
    _pending_count: dict[str, int]
    _in_hand: int

    def _prepare(self, q: deque[Any], packer: Any) -> list[tuple[str, bytes, list[bytes], int]]:
        groups: dict[tuple[bytes, int, int], tuple[str, dict[str, Any], list[Any]]] = {}
        bad: dict[str, int] = {}
        refused: dict[tuple[str, str], int] = {}
        convert = self._convert
        self._in_hand = 1  # force_flush must not see an empty queue while we hold items
        items = pop_up_to(q, self._batch)
        if self._learn is not None:
            try:
                self._learn(items)
            except Exception:  # only a missed speed-up: the items still go the long way
                log.debug("learning span shapes failed", exc_info=True)
        for item in items:
            try:
                cat, topic, kind, resource, rec = convert(item)
            except Dropped as exc:
                refused[(exc.category, exc.reason)] = refused.get((exc.category, exc.reason), 0) + 1
                continue
            except Exception:
                log.debug("could not convert %r", type(item), exc_info=True)
                bad["unknown"] = bad.get("unknown", 0) + 1
                continue
            key = (topic, kind, id(resource))
            g = groups.get(key)
            if g is None:
                groups[key] = (cat, resource, [rec])
            else:
                g[2].append(rec)
        out = []
        pending_count: dict[str, int] = {}
        for (topic, kind, _), (cat, resource, recs) in groups.items():
            try:
                frames = wire.encode(packer, topic, kind, self._publisher, 0, resource, recs)
            except Exception:
                # One record that cannot be encoded (an attribute whose str() raises) must not cost
                # the batch: find it, count it, send the rest.
                packer.reset()
                good = _encodable(packer, recs)
                bad[cat] = bad.get(cat, 0) + len(recs) - len(good)
                try:
                    frames = wire.encode(packer, topic, kind, self._publisher, 0, resource, good) if good else None
                except Exception:  # the resource itself
                    log.debug("could not encode a batch for %s", topic, exc_info=True)
                    packer.reset()
                    frames = None
                if frames is None:
                    bad[cat] += len(good)
                    continue
                recs = good
            out.append((cat, topic, frames, len(recs)))
            pending_count[cat] = pending_count.get(cat, 0) + len(recs)
        with self._lock:
            for cat, c in bad.items():
                self._dropped[(cat, ENCODE_ERROR)] = self._dropped.get((cat, ENCODE_ERROR), 0) + c
            for key, c in refused.items():
                self._dropped[key] = self._dropped.get(key, 0) + c
            for cat, c in pending_count.items():
                self._pending_count[cat] = self._pending_count.get(cat, 0) + c
            self._in_hand = 0
        return out


def _encodable(packer: Any, recs: list[Any]) -> list[Any]:
    """The records of ``recs`` that msgpack can encode (sender thread, failure path only)."""
    good = []
    for rec in recs:
        try:
            packer.pack(rec)
        except Exception:
            packer.reset()
            continue
        good.append(rec)
    return good
