"""Percentiles (and count/sum/avg/min/max) of histogram metrics over a window, from their buckets.

What Prometheus' ``histogram_quantile(q, sum by (le) (increase(h[window])))`` does, for OTel
explicit-bucket and exponential histograms as the store keeps them (``data`` of a metric row:
``count``, ``sum``, ``min``, ``max``, ``temporality`` and ``bounds``/``counts`` or ``scale``,
``zero_count``, ``zero_threshold``, ``positive``/``negative`` ``{offset, counts}``):

1. Per series (service + point attributes), what was recorded in the window: delta points are
   added up; cumulative points (the OTel SDK's default, and assumed when ``temporality`` is
   missing) give last minus the series' last point before the window (looked up one window back);
   a count that goes down, or a changed bucket layout, is a reset and the new point counts whole.
   Exponential histograms of different scales are brought to the coarser scale first.
2. The series' buckets are added together (same bounds add up; different bounds overlap and are
   merged as a mixture of uniform distributions).
3. The rank ``q * count`` is located in the cumulative bucket counts and interpolated linearly
   inside its bucket. The open-ended first and last explicit buckets are closed with the points'
   ``min``/``max`` when known (otherwise, like Prometheus: 0 below a positive first bound, and the
   last finite bound above).

Precision: the answer lies in the bucket that holds the true nearest-rank value, so the error is
below that bucket's width: explicit buckets, the distance between the two bounds around it;
exponential, a relative error below ``2**(2**-scale) - 1`` (4.4 % at scale 4, 0.27 % at scale 8).
(docs/alerts.md says the same for users.)

Pure functions; the caller's thread, with the caller's connection or rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

HISTOGRAM_TYPES = ("histogram", "exponential_histogram")
_DELTA = ("delta", 1)  # the SDK exporter writes names, OTLP decoding the enum value


@dataclass
class Hist:
    """One point's (or a window's) buckets. ``counts`` keys: explicit ``(lo, hi)``; exponential
    ``("p", index)``, ``("n", index)`` and ``("z",)`` at ``scale``."""

    exponential: bool
    counts: dict[Any, float] = field(default_factory=dict)
    scale: int = 0
    zero_threshold: float = 0.0
    count: float = 0.0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None

    def layout(self) -> Any:
        return ("exp", self.zero_threshold) if self.exponential else tuple(sorted(self.counts))


def parse_point(mtype: str, data: Mapping[str, Any]) -> Hist | None:
    """A stored histogram row's ``data`` → Hist; None if it lacks buckets (malformed or old row)."""
    try:
        if mtype == "histogram":
            bounds = [float(b) for b in data["bounds"]]
            raw = [float(c) for c in data["counts"]]
            if len(raw) != len(bounds) + 1:
                return None
            edges = [-math.inf, *bounds, math.inf]
            h = Hist(False, {(edges[i], edges[i + 1]): c for i, c in enumerate(raw)})
        elif mtype == "exponential_histogram":
            pos, neg = data.get("positive") or {}, data.get("negative") or {}
            if not pos and not neg and data.get("count") and not data.get("zero_count"):
                return None  # an exponential point without its buckets (older stored rows)
            h = Hist(True, scale=int(data["scale"]), zero_threshold=float(data.get("zero_threshold") or 0.0))
            for sign, b in (("p", pos), ("n", neg)):
                off = int(b.get("offset") or 0)
                for i, c in enumerate(b.get("counts") or ()):
                    if c:
                        h.counts[(sign, off + i)] = float(c)
            if data.get("zero_count"):
                h.counts[("z",)] = float(data["zero_count"])
        else:
            return None
        h.count = float(data.get("count") or sum(h.counts.values()))
        h.sum = float(data.get("sum") or 0.0)
        h.min = None if data.get("min") is None else float(data["min"])
        h.max = None if data.get("max") is None else float(data["max"])
        return h
    except (KeyError, TypeError, ValueError):
        return None


def _downscale(h: Hist, scale: int) -> Hist:
    if not h.exponential or h.scale <= scale:
        return h
    shift = h.scale - scale
    out = Hist(True, scale=scale, zero_threshold=h.zero_threshold, count=h.count, sum=h.sum, min=h.min, max=h.max)
    for key, c in h.counts.items():
        k = key if key[0] == "z" else (key[0], key[1] >> shift)
        out.counts[k] = out.counts.get(k, 0.0) + c
    return out


def _minus(cur: Hist, prev: Hist) -> Hist | None:
    """cur - prev of one cumulative series; None on a reset (count down or another layout)."""
    if cur.exponential != prev.exponential or cur.count < prev.count:
        return None
    if cur.exponential:
        scale = min(cur.scale, prev.scale)
        cur, prev = _downscale(cur, scale), _downscale(prev, scale)
    if cur.layout() != prev.layout() and not cur.exponential:
        return None
    out = Hist(cur.exponential, scale=cur.scale, zero_threshold=cur.zero_threshold,
               count=cur.count - prev.count, sum=cur.sum - prev.sum, min=cur.min, max=cur.max)
    for key in cur.counts.keys() | prev.counts.keys():
        d = cur.counts.get(key, 0.0) - prev.counts.get(key, 0.0)
        if d < 0:
            return None
        if d:
            out.counts[key] = d
    return out


def _bounds(key: Any, h: Hist) -> tuple[float, float]:
    if not h.exponential:
        return key
    if key[0] == "z":
        return -h.zero_threshold, h.zero_threshold
    step = 2.0 ** -h.scale
    lo, hi = 2.0 ** (key[1] * step), 2.0 ** ((key[1] + 1) * step)
    return (lo, hi) if key[0] == "p" else (-hi, -lo)


@dataclass
class Window:
    """What the series recorded in the window, merged: buckets ``(lo, hi) -> count``."""

    buckets: dict[tuple[float, float], float] = field(default_factory=dict)
    count: float = 0.0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    series: int = 0

    def add(self, h: Hist) -> None:
        for key, c in h.counts.items():
            b = _bounds(key, h)
            self.buckets[b] = self.buckets.get(b, 0.0) + c
        self.count += h.count
        self.sum += h.sum
        if h.count:
            if h.min is not None:
                self.min = h.min if self.min is None else min(self.min, h.min)
            if h.max is not None:
                self.max = h.max if self.max is None else max(self.max, h.max)


# What tells one series from another besides its point attributes: the service, the collector
# instance (a device) and the resource's identity (the SDK gives each process its own
# service.instance.id), so two processes' cumulative points are never subtracted from each other.
SERIES_SQL = ("json_array(service, instance, CASE WHEN json_valid(metadata) THEN json_extract(metadata, "
              "'$.resource.\"service.instance.id\"', '$.resource.\"host.name\"', '$.resource.\"process.pid\"') END)")
Row = tuple[str | None, str, str]  # (series identity, e.g. SERIES_SQL's value; metric_type; data JSON), by time


def _series(rows: Iterable[Row]) -> dict[str, list[tuple[Hist, bool]]]:
    out: dict[str, list[tuple[Hist, bool]]] = {}
    for series, mtype, raw in rows:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        h = parse_point(mtype, data)
        if h is None:
            continue
        key = orjson.dumps([series, data.get("attributes")], option=orjson.OPT_SORT_KEYS).decode()
        out.setdefault(key, []).append((h, data.get("temporality") in _DELTA))
    return out


def window(rows: Iterable[Row], before: Iterable[Row] = ()) -> Window:
    """Merge the points of ``rows`` (in the window, oldest first); ``before``: points preceding the
    window (oldest first), whose last per series is the baseline of a cumulative series."""
    base = {k: pts[-1][0] for k, pts in _series(before).items()}
    out = Window()
    for key, points in _series(rows).items():
        out.series += 1
        prev = base.get(key)
        for h, delta in points:
            if delta:
                out.add(h)
                continue
            d = _minus(h, prev) if prev is not None else None
            out.add(h if d is None else d)
            prev = h
    return out


def _close(lo: float, hi: float, w: Window) -> tuple[float, float]:
    """Finite bounds for the open-ended buckets (see the module docstring)."""
    if lo == -math.inf:
        lo = w.min if w.min is not None else (0.0 if hi > 0 else hi)
    if hi == math.inf:
        hi = w.max if w.max is not None else lo
    lo, hi = min(lo, hi), max(lo, hi)
    if w.min is not None and w.max is not None:  # the recorded extremes bound every bucket
        lo, hi = max(lo, min(w.min, hi)), min(hi, max(w.max, lo))
    return lo, hi


def quantile(w: Window, q: float) -> float | None:
    """The ``q`` quantile (0..1) of the window's values; None when nothing was recorded."""
    bs = sorted((*_close(lo, hi, w), c) for (lo, hi), c in w.buckets.items() if c > 0)
    total = sum(c for _, _, c in bs)
    if total <= 0:
        return None
    target = min(max(q, 0.0), 1.0) * total
    if all(bs[i][1] <= bs[i + 1][0] for i in range(len(bs) - 1)):  # one layout: walk the buckets
        acc = 0.0
        for lo, hi, c in bs:
            if acc + c >= target:
                return lo if hi == lo else lo + (hi - lo) * max(0.0, target - acc) / c
            acc += c
        return bs[-1][1]

    def cdf(x: float) -> float:  # several layouts overlap: a mixture of uniform buckets
        return sum(c if x >= hi else 0.0 if x <= lo else c * (x - lo) / (hi - lo) for lo, hi, c in bs)

    xs = sorted({x for lo, hi, _ in bs for x in (lo, hi)})
    px, pc = xs[0], cdf(xs[0])
    if pc >= target:
        return px
    for x in xs[1:]:
        cx = cdf(x)
        if cx >= target:
            return x if cx == pc else px + (x - px) * (target - pc) / (cx - pc)
        px, pc = x, cx
    return xs[-1]


def aggregate(w: Window, aggregation: str) -> float | None:
    """avg/min/max/sum/count/pNN of the window's recorded values; None when nothing was recorded."""
    if w.count <= 0:
        return None
    if aggregation.startswith("p") and aggregation[1:].isdigit():
        return quantile(w, int(aggregation[1:]) / 100)
    if aggregation == "count":
        return w.count
    if aggregation == "sum":
        return w.sum
    if aggregation == "avg":
        return w.sum / w.count
    if aggregation == "min":
        return w.min if w.min is not None else quantile(w, 0.0)
    if aggregation == "max":
        return w.max if w.max is not None else quantile(w, 1.0)
    raise ValueError(f"aggregation {aggregation!r} does not apply to a histogram")


def resolution(w: Window, value: float) -> float:
    """Width of the bucket holding ``value``: the documented bound on the answer's error."""
    widths = [hi - lo for (lo, hi) in (_close(lo, hi, w) for lo, hi in w.buckets) if lo <= value <= hi]
    return max(widths, default=0.0)
