"""Turning queued SDK objects into wire tuples: the span snapshot taken on the app thread and the
converter that runs on the transport's sender thread.

``snapshot`` runs in ``on_end`` on the thread that ends a span; everything in ``_Converter`` runs
on the sender thread only (categorise, choose the topic, redact). Spans of a shape seen before
take ``span_plans`` (one cached plan per shape) instead of the general path below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord

from .. import categories as cats
from .. import wire
from ..redact.redactor import Redactor
from .snapshot import EMPTY, PINNED, SNAPSHOT_LEN
from .span_plans import SpanPlans
from .transport import Dropped, Prepared
from .volume import BELOW_LEVEL, SAMPLED_OUT, AppVolume

log = logging.getLogger("otel_telemetry.sdk.exporter")

_MARKER = re.compile(r"\[REDACTED:([^\]]*)\]")


class _Converter:
    """Turns queued SDK objects into (redacted) wire tuples. Runs on the sender thread only.

    ``records=False``: the collector redacts the records (the endpoint stays on this device, and
    the transport flags every frame ``wire.FLAG_REDACT``); the redactor then only sees resources and
    topic components, once each (a component has to be redacted here: ``topic_for`` rewrites the
    characters a detector needs, such as ``@``)."""

    def __init__(self, rules: Sequence[cats.Rule] = (), redactor: Redactor | None = None,
                 records: bool = True, volume: AppVolume | None = None) -> None:
        self.rules = tuple(rules)
        # Levels and log sampling (``sdk.volume``): checked once a record's category is known.
        self.volume = volume if volume is not None and (volume.levels_on or volume.sample_logs) else None
        self.redactor = redactor if redactor is not None and redactor.enabled else None
        self._records = self.redactor if records else None
        self._resources: dict[int, tuple[Any, dict[str, Any]]] = {}
        self._metric_resources: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._topics: dict[tuple[str, str], bytes] = {}
        self._scopes: dict[tuple[int, int], tuple[str | None, str | None, dict[str, Any], str]] = {}
        # User rules may look at any attribute value, so with rules every span takes the long way.
        self.plans = None if self.rules else SpanPlans(lambda snap: self.span(snap, False), self._records)

    def redaction_counts(self) -> dict[str, int]:
        """Replacements per rule so far (counts only, never values); any thread."""
        return self.redactor.counts() if self.redactor is not None else {}

    def resource(self, res: Any) -> dict[str, Any]:
        key = id(res)
        hit = self._resources.get(key)
        if hit is None or hit[0] is not res:
            attrs = dict(res.attributes) if res is not None else {}
            if self.redactor is not None:
                attrs = self.redactor.redact_resource(attrs)  # once per resource, not per record
            hit = (res, attrs)
            self._resources[key] = hit
        return hit[1]

    def topic(self, category: str, component: str) -> bytes:
        key = (category, component)
        t = self._topics.get(key)
        if t is None:
            comp = str(component)
            if self.redactor is not None:
                # Before topic_for hides an '@' as '_'; a marker becomes "redacted-<rule>" there.
                red = self.redactor.redact_text(comp)
                if red is not comp:
                    comp = _MARKER.sub(lambda m: "redacted-" + m.group(1).lower(), red)
            t = cats.topic_for(category, comp).encode()
            if len(self._topics) < 4096:
                self._topics[key] = t
        return t

    def __call__(self, item: Any) -> Prepared:
        return self.convert(item, True)

    def _redacted(self, category: str, item: Prepared) -> Prepared:
        """``item`` with its record, resource and topic redacted; if the redactor fails, the
        record is dropped and counted (``redaction_error``), never sent as it was."""
        red = self._records
        assert red is not None
        _, topic, kind, resource, rec = item
        try:
            if kind == wire.KIND_SPANS:
                rec = red.redact_span(rec)
            elif kind == wire.KIND_LOGS:
                rec = red.redact_log(rec)
            else:
                rec = red.redact_metric(rec)
                resource = self._metric_resource(resource)
        except Exception as exc:
            log.debug("record dropped: redaction failed (%s)", type(exc).__name__)
            raise Dropped(category, "redaction_error") from None
        return category, topic, kind, resource, rec

    def convert(self, item: Any, redact: bool) -> Prepared:
        if type(item) is tuple:
            if len(item) == SNAPSHOT_LEN:
                return self.span(item, redact)
            return self.metric(item, redact)  # type: ignore[arg-type]  # a prepared metric point
        if isinstance(item, (ReadWriteLogRecord, ReadableLogRecord)):
            return self.log(item, redact)
        raise TypeError(f"cannot send {type(item).__name__}")

    def metric(self, item: Prepared, redact: bool) -> Prepared:
        if self.volume is not None and self.volume.below(item[0], "info"):
            raise Dropped(item[0], BELOW_LEVEL)
        if self.redactor is None or not redact:
            return item
        category, _, kind, resource, rec = item
        attrs = rec[7] or EMPTY
        component = attrs.get("telemetry.component") or rec[9] or resource.get("service.name") or "unknown"
        # The metric exporter's converter has no redactor: the topic is redacted here in any case.
        item = (category, self.topic(category, str(component)), kind, resource, rec)
        return self._redacted(category, item) if self._records is not None else item

    def _metric_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The redacted resource of one metric export, the same dict for all its points (the
        transport batches by resource identity); the original is held so its id stays unique."""
        hit = self._metric_resources.get(id(resource))
        if hit is None or hit[0] is not resource:
            if len(self._metric_resources) >= 64:
                self._metric_resources.clear()
            hit = (resource, self.redactor.redact_resource(resource))  # type: ignore[union-attr]
            self._metric_resources[id(resource)] = hit
        return hit[1]

    def _scope_info(self, scope_id: int, res_id: int) -> tuple[str | None, str | None, dict[str, Any], str]:
        key = (scope_id, res_id)
        hit = self._scopes.get(key)
        if hit is None:
            scope, res = PINNED.get(scope_id), PINNED.get(res_id)
            resource = self.resource(res)
            name = scope.name if scope is not None else None
            hit = (name, scope.version if scope is not None else None, resource,
                   name or str(resource.get("service.name") or "unknown"))
            self._scopes[key] = hit
        return hit

    def span(self, snap: tuple[Any, ...], redact: bool = True) -> Prepared:
        (name, trace_id, span_id, parent_id, start, end, kind, code, description, attrs, events, links,
         scope_id, res_id) = snap
        has_exc = events is not None and any(e[0] == "exception" for e in events)
        if links is not None:
            links = [(t.to_bytes(16, "big"), s.to_bytes(8, "big"), a) for t, s, a in links]
        scope_name, scope_version, resource, default_component = self._scope_info(scope_id, res_id)
        category, _ = cats.categorise_span(name, kind, code, attrs, has_exc, self.rules)
        if self.volume is not None and self.volume.below(category, cats.span_level(code, attrs)):
            raise Dropped(category, BELOW_LEVEL)  # a plan is never made for its shape (span_plans)
        component = attrs.get("telemetry.component") or default_component
        rec = (
            name, trace_id.to_bytes(16, "big"), span_id.to_bytes(8, "big"),
            parent_id.to_bytes(8, "big") if parent_id is not None else None,
            start, end, kind, code, description, attrs, events, links, scope_name, scope_version,
        )
        out = category, self.topic(category, component), wire.KIND_SPANS, resource, rec
        return self._redacted(category, out) if redact and self._records is not None else out

    def log(self, item: ReadWriteLogRecord | ReadableLogRecord, redact: bool = True) -> Prepared:
        lr = item.log_record
        attrs = dict(lr.attributes or EMPTY)
        sev = lr.severity_number.value if lr.severity_number is not None else 0
        event_name = getattr(lr, "event_name", None)
        scope = item.instrumentation_scope
        scope_name = scope.name if scope is not None else None
        resource = self.resource(item.resource)
        category, _ = cats.categorise_log(sev, attrs, event_name or "", self.rules)
        vol = self.volume
        if vol is not None:
            if vol.below(category, cats.severity_level(sev)):
                raise Dropped(category, BELOW_LEVEL)
            if vol.sample_logs and lr.trace_id and not (lr.trace_flags or 0) & 1:
                raise Dropped(category, SAMPLED_OUT)  # its trace was sampled out
        component = attrs.get("telemetry.component") or scope_name or resource.get("service.name") or "unknown"
        body = lr.body
        if body is not None and not isinstance(body, (str, int, float, bool, list, dict, bytes)):
            body = str(body)
        rec = (
            lr.timestamp, lr.observed_timestamp, sev, lr.severity_text, body, attrs,
            lr.trace_id.to_bytes(16, "big") if lr.trace_id else None,
            lr.span_id.to_bytes(8, "big") if lr.span_id else None,
            event_name, scope_name, scope.version if scope is not None else None,
        )
        out = category, self.topic(category, str(component)), wire.KIND_LOGS, resource, rec
        return self._redacted(category, out) if redact and self._records is not None else out

    def drop_category(self, item: Any) -> str:
        """Category of an item dropped on an app thread (slow path only)."""
        try:
            return self.convert(item, False)[0]
        except Exception:
            return "unknown"
