"""Volume control in the collector: a minimum level per category, and optional tail sampling.

``volume:`` in collector.yaml::

    volume:
      min_level:                    # records below their category's level are dropped: below_level
        system_performance: warning
        "*": info                   # every category not named
      tail_sampling:                # off unless this section is present (enabled: false turns it off)
        decision_wait: 5            # seconds after a trace's first span before it is decided
        num_traces: 10000           # traces held at most (the oldest is decided early beyond)
        max_spans: 100000           # spans held or waiting for the store at most (push-back beyond)
        keep_errors: true           # any span with status ERROR keeps the trace
        latency_threshold_ms: 1000  # any span at least this long keeps the trace (absent: off)
        keep_genai: true            # any GenAI span keeps the trace
        sampling_percentage: 10     # of the other traces, chosen by trace id (OTel TraceIdRatioBased)

:class:`Volume` splits each mapped batch on the receiver thread (:meth:`Volume.split`, no side
effects, so a batch the store refuses can be retried), and :meth:`Volume.commit` counts and hands
spans to the :class:`~.tail_sampling.TailSampler` once the store took the rest. Every record is
accounted for: received = stored + duplicates + ``dropped.below_level`` +
``dropped.tail_sampled_out`` + ``tail_sampling.held`` (0 after shutdown).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import categories as cats
from ..store.schema import COLUMNS
from .tail_sampling import TailSampler, TailSamplingConfig

LEVELS = cats.LEVELS
_RANK = cats.LEVEL_RANK
ALL = cats.ALL_CATEGORIES

_TYPE, _CATEGORY, _LEVEL, _TRACE = (COLUMNS.index(c) for c in ("type", "category", "level", "trace_id"))


@dataclass
class VolumeConfig:
    min_level: dict[str, str] = field(default_factory=dict)  # category or "*" -> level
    tail_sampling: TailSamplingConfig | None = None

    @property
    def active(self) -> bool:
        return bool(self.min_level) or self.tail_sampling is not None


def _num(where: str, value: Any, minimum: float, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{where}: expected a number >= {minimum}, got {value!r}")
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    return kind(value)


def _keys(where: str, raw: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    return raw


def parse_volume(raw: Any, where: str = "volume") -> VolumeConfig:
    """Validate ``volume:``; raises ValueError naming the key."""
    cfg = VolumeConfig()
    if raw is None:
        return cfg
    raw = _keys(where, raw, {"min_level", "tail_sampling"})
    levels = _keys(f"{where}.min_level", raw.get("min_level") or {}, {*cats.CATEGORIES, ALL})
    for cat, level in levels.items():
        if level not in _RANK:
            raise ValueError(f"{where}.min_level.{cat}: expected one of {'|'.join(LEVELS)}, got {level!r}")
        cfg.min_level[cat] = level
    ts = raw.get("tail_sampling")
    if ts is not None:
        w = f"{where}.tail_sampling"
        ts = _keys(w, ts, {"enabled", "decision_wait", "num_traces", "max_spans", "keep_errors",
                           "latency_threshold_ms", "keep_genai", "sampling_percentage"})
        for key in ("enabled", "keep_errors", "keep_genai"):
            if key in ts and not isinstance(ts[key], bool):
                raise ValueError(f"{w}.{key}: expected true or false, got {ts[key]!r}")
        t = TailSamplingConfig()
        if "decision_wait" in ts:
            t.decision_wait = _num(f"{w}.decision_wait", ts["decision_wait"], 0.001)
            if t.decision_wait > 600:
                raise ValueError(f"{w}.decision_wait: at most 600 seconds, got {ts['decision_wait']!r}")
        for key in ("num_traces", "max_spans"):
            if key in ts:
                setattr(t, key, _num(f"{w}.{key}", ts[key], 1, int))
        if ts.get("latency_threshold_ms") is not None:
            t.latency_threshold_ms = _num(f"{w}.latency_threshold_ms", ts["latency_threshold_ms"], 0)
        if "sampling_percentage" in ts:
            t.sampling_percentage = _num(f"{w}.sampling_percentage", ts["sampling_percentage"], 0)
            if t.sampling_percentage > 100:
                raise ValueError(f"{w}.sampling_percentage: at most 100, got {ts['sampling_percentage']!r}")
        t.keep_errors = ts.get("keep_errors", t.keep_errors)
        t.keep_genai = ts.get("keep_genai", t.keep_genai)
        if ts.get("enabled", True):
            cfg.tail_sampling = t
    return cfg


@dataclass(slots=True)
class Split:
    """What :meth:`Volume.split` decided for one batch (indices into its rows)."""

    keep: list[int]
    below: dict[str, int]  # category -> rows dropped below their level
    held: list[int]  # spans for the tail sampler


class Volume:
    """Level filter + tail sampler. ``split`` and ``commit`` run on receiver threads; the sampler
    has its own thread (``start``/``shutdown``)."""

    def __init__(self, cfg: VolumeConfig,
                 deliver: Callable[[dict[str, Any], list[Any], list[tuple[Any, ...]]], bool]) -> None:
        self.cfg = cfg
        default = cfg.min_level.get(ALL)
        self._min_rank = {c: _RANK[cfg.min_level.get(c, default or "debug")] for c in cats.CATEGORIES}
        self._levels_on = any(self._min_rank.values())
        self.sampler = TailSampler(cfg.tail_sampling, deliver) if cfg.tail_sampling is not None else None
        self._below: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.sampler is not None:
            self.sampler.start()

    def shutdown(self, timeout: float) -> bool:
        """Decide every held trace now and deliver the kept ones (idempotent)."""
        return self.sampler.shutdown(timeout) if self.sampler is not None else True

    def split(self, kind: str, rows: list[tuple[Any, ...]]) -> Split | None:
        """None when every row goes straight to the store (the common case, no copy)."""
        levels_on, sampling = self._levels_on, self.sampler is not None and kind == "span"
        if not levels_on and not sampling:
            return None
        keep: list[int] = []
        below: dict[str, int] = {}
        held: list[int] = []
        ranks = self._min_rank
        for i, row in enumerate(rows):
            cat = row[_CATEGORY]
            if levels_on and _RANK.get(row[_LEVEL], 1) < ranks.get(cat, 0):
                below[cat] = below.get(cat, 0) + 1
            elif sampling and row[_TYPE] == "span" and row[_TRACE] is not None:
                held.append(i)
            else:
                keep.append(i)
        if not below and not held:
            return None
        return Split(keep, below, held)

    def reserve(self, split: Split) -> bool:
        """Room for the held spans (receiver thread); False = push back, nothing was taken."""
        return not split.held or self.sampler is None or self.sampler.reserve(len(split.held))

    def unreserve(self, split: Split) -> None:
        if split.held and self.sampler is not None:
            self.sampler.unreserve(len(split.held))

    def commit(self, split: Split, resource: dict[str, Any], records: list[Any],
               rows: list[tuple[Any, ...]]) -> None:
        """The store took ``split.keep``: count the level drops, hand the held spans over."""
        if split.below:
            with self._lock:
                for cat, n in split.below.items():
                    self._below[cat] = self._below.get(cat, 0) + n
        if split.held and self.sampler is not None:
            self.sampler.add(resource, [(records[i], rows[i]) for i in split.held])

    def counters(self) -> dict[str, Any]:
        """Status section ``volume`` (any thread)."""
        with self._lock:
            below = dict(self._below)
        out: dict[str, Any] = {"min_level": dict(self.cfg.min_level),
                               "dropped": {"below_level": below, "tail_sampled_out": {}}}
        if self.sampler is not None:
            ts = self.sampler.counters()
            out["dropped"]["tail_sampled_out"] = ts.pop("sampled_out")
            out["tail_sampling"] = ts
        return out
