"""Volume control in the app: a minimum level per category, and trace-consistent head sampling.

Both are off unless set, and both count what they drop, so ``emitted == sent + Σ dropped``
holds with them on (``dropped.below_level``, ``dropped.sampled_out``):

- **Levels** (``min_level`` / ``OTEL_TELEMETRY_MIN_LEVEL``) are checked where a record's category
  is known: on the transport's sender thread (``convert._Converter``). A span's level needs its
  status, so it is known only at its end; spans of a shape below its level never get a fast-path
  plan (``span_plans``) and are dropped by the general path.
- **Head sampling** (``sampling`` / ``OTEL_TELEMETRY_SAMPLING``) is an OTel ``Sampler``:
  :class:`CategorySampler` decides when a span starts, so a span sampled out is a non-recording
  span that costs the app almost nothing. A root span is kept with its category's rate, chosen
  by its trace id as the SDK's ``TraceIdRatioBased`` does; every other span follows its parent
  (local or remote, through ``traceparent``), so a trace is kept or dropped whole. The root's
  category is decided from what is known at start (name, kind, attributes; status not yet).
  Events (``record_telemetry``) and logs are not sampled unless ``sample_logs`` is on; then they
  follow their trace's decision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

from .. import categories as cats
from .. import settings

log = logging.getLogger("otel_telemetry.sdk.volume")

BELOW_LEVEL = "below_level"
SAMPLED_OUT = "sampled_out"
_ID_LIMIT = 1 << 64  # TraceIdRatioBased compares the trace id's low 64 bits with rate * 2^64


@dataclass(frozen=True)
class AppVolume:
    """The app's volume settings, resolved once per transport."""

    min_rank: dict[str, int] = field(default_factory=dict)  # category -> lowest rank kept
    rates: dict[str, float] = field(default_factory=dict)  # category -> head sampling rate
    sample_logs: bool = False

    @property
    def levels_on(self) -> bool:
        return any(self.min_rank.values())

    @property
    def sampling_on(self) -> bool:
        return any(r < 1.0 for r in self.rates.values())

    def below(self, category: str, level: str) -> bool:
        """True when a record of ``level`` in ``category`` is below the category's minimum."""
        return cats.LEVEL_RANK.get(level, 1) < self.min_rank.get(category, 0)


def resolve(min_level: Any = None, sampling: Any = None, sample_logs: Any = None) -> AppVolume:
    """Arguments over ``OTEL_TELEMETRY_MIN_LEVEL`` / ``_SAMPLING`` / ``_SAMPLE_LOGS``; raises
    ValueError naming the setting for a bad value."""
    levels = settings.resolve("min_level", min_level)
    rates = settings.resolve("sampling", sampling)
    default_level = levels.get(cats.ALL_CATEGORIES, "debug")
    default_rate = rates.get(cats.ALL_CATEGORIES, 1.0)
    return AppVolume(
        {c: cats.LEVEL_RANK[levels.get(c, default_level)] for c in cats.CATEGORIES},
        {c: float(rates.get(c, default_rate)) for c in cats.CATEGORIES},
        settings.resolve("sample_logs", sample_logs),
    )


Count = Callable[[str, str], None]  # (category, reason): one record dropped

# Where a sampler without its own ``count`` counts: the transport the exporters share, once
# ``exporter.get_transport`` made it (:func:`attach`); drops before that wait here.
_shared_count: Count | None = None
_early: dict[tuple[str, str], int] = {}
_early_lock = threading.Lock()


def attach(count: Callable[[str, str, int], None]) -> None:
    """The process's transport counts from now on (called by ``exporter.get_transport``)."""
    global _shared_count
    with _early_lock:
        for (category, reason), n in _early.items():
            count(category, reason, n)
        _early.clear()
        _shared_count = count


def _count_shared(category: str, reason: str) -> None:
    count = _shared_count
    if count is not None:
        count(category, reason)
        return
    with _early_lock:
        if _shared_count is not None:
            _shared_count(category, reason)
        else:
            _early[(category, reason)] = _early.get((category, reason), 0) + 1


class CategorySampler(Sampler):
    """Head sampling per category, trace-consistent (see the module docstring).

    ``should_sample`` runs on the thread that starts a span: it never raises (any error keeps
    the span) and never blocks. ``inner``: a sampler that decides first (``OTEL_TRACES_SAMPLER``
    when ``configure()`` installs this one); spans it drops are counted ``sampled_out`` too.
    ``count``: how a dropped span is counted; None finds the process's transport on first use
    (the ``OTEL_TRACES_SAMPLER=otel_telemetry`` entry point, made before any exporter).
    """

    def __init__(self, volume: AppVolume | None = None, rules: Sequence[cats.Rule] = (),
                 count: Count | None = None, inner: Sampler | None = None) -> None:
        self.volume = volume if volume is not None else resolve()
        self.rules = tuple(rules)
        self.inner = inner
        self._count = count
        self._bounds = {c: round(r * _ID_LIMIT) for c, r in self.volume.rates.items()}
        self._uniform = len(set(self._bounds.values())) == 1  # one rate: no need to categorise roots

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
        attributes: Attributes = None, links: Sequence[Link] | None = None, trace_state: Any = None,
    ) -> SamplingResult:
        try:
            return self._decide(parent_context, trace_id, name, kind, attributes, links)
        except Exception:  # never into the app: keep the span
            log.debug("sampling decision failed", exc_info=True)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def _decide(self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None,
                attributes: Attributes, links: Sequence[Link] | None) -> SamplingResult:
        attrs: Mapping[str, Any] = attributes or {}
        parent = get_current_span(parent_context).get_span_context()
        state = parent.trace_state if parent is not None and parent.is_valid else None
        if not self.volume.sample_logs and "telemetry.event" in attrs and "telemetry.data" in attrs:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)  # events: not sampled
        if self.inner is not None:
            first = self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links)
            if first.decision is Decision.DROP:
                self._dropped(name, kind, attrs)
                return first
        if parent is not None and parent.is_valid:
            keep = parent.trace_flags.sampled
        else:
            low = trace_id & (_ID_LIMIT - 1)
            if self._uniform:
                keep = low < next(iter(self._bounds.values()))
            else:
                keep = low < self._bounds[self._category(name, kind, attrs)]
        if keep:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)
        self._dropped(name, kind, attrs)
        return SamplingResult(Decision.DROP, None, state)

    def _category(self, name: str, kind: SpanKind | None, attrs: Mapping[str, Any]) -> str:
        k = kind.value if kind is not None else cats.KIND_INTERNAL
        return cats.categorise_span(name, k, cats.STATUS_UNSET, attrs, False, self.rules)[0]

    def _dropped(self, name: str, kind: SpanKind | None, attrs: Mapping[str, Any]) -> None:
        (self._count or _count_shared)(self._category(name, kind, attrs), SAMPLED_OUT)

    def get_description(self) -> str:
        rates = ",".join(f"{c}={r:g}" for c, r in self.volume.rates.items() if r < 1.0)
        return f"OtelTelemetryCategorySampler{{{rates or 'all'}}}"


def sampler_factory(arg: str | None = None) -> Sampler:
    """The ``opentelemetry_traces_sampler`` entry point ``otel_telemetry``
    (``OTEL_TRACES_SAMPLER=otel_telemetry``); ``OTEL_TRACES_SAMPLER_ARG`` may hold the rates
    (``user_interaction=0.1,*=1``), else ``OTEL_TELEMETRY_SAMPLING`` does."""
    return CategorySampler(resolve(sampling=arg or None))
