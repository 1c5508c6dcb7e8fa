"""The one mapping from decoded spans, metrics and logs (wire record tuples) to store rows.

Input is the wire record tuples (``otel_telemetry.wire``); OTLP decoders produce the same tuples,
so there is one mapping for every source. Output rows are tuples in ``store.schema.COLUMNS`` order.
Documented for users in ``docs/schema.md``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from .. import categories as cats
from ..store.schema import component_of
from .genai import normalise as genai

_KINDS = ("internal", "server", "client", "producer", "consumer")
_STATUS = ("unset", "ok", "error")
_SESSION_KEYS = ("session.id", "session_id", "telemetry.session_id")
_EVENT_DATA_KEY = "telemetry.data"
_EVENT_META_KEY = "telemetry.metadata"  # record_telemetry(metadata=...): the row's metadata.record


def hex_id(raw: bytes | None) -> str | None:
    if not raw or not any(raw):
        return None
    return raw.hex()


def _session(attrs: Mapping[str, Any]) -> str | None:
    for key in _SESSION_KEYS:
        value = attrs.get(key)
        if value is not None:
            return str(value)
    return None


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _content_uid(*parts: Any) -> bytes:
    return hashlib.blake2b(_dumps(parts).encode(), digest_size=16).digest()


def _meta(resource: Mapping[str, Any], scope: str | None, scope_version: str | None,
          record: Any = None) -> str:
    # "" and absent mean the same in OTLP; store one form so both paths give identical rows.
    meta = {"resource": resource, "scope": {"name": scope or None, "version": scope_version or None}}
    if record is not None:
        meta["record"] = record
    return _dumps(meta)


def _json_attr(value: Any) -> Any:
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return {"raw": value}


def span_row(
    rec: Sequence[Any], resource: Mapping[str, Any], category: str, component: str,
    service: str | None, subcategory: str | None = None, meta: str | None = None,
) -> tuple[Any, ...]:
    """``meta``: the row's metadata JSON when the caller has it (one per resource and scope)."""
    (name, trace_id, span_id, parent, start, end, kind, status_code, status_msg, attrs, events,
     links, scope, scope_version) = rec
    is_event = "telemetry.event" in attrs and _EVENT_DATA_KEY in attrs
    record_meta = None
    if is_event:
        data: Any = _json_attr(attrs[_EVENT_DATA_KEY])
        if _EVENT_META_KEY in attrs:
            record_meta = _json_attr(attrs[_EVENT_META_KEY])
        level = str(attrs.get("telemetry.level") or "info")
        rtype, event = "event", str(attrs["telemetry.event"])
    else:
        data = {"attributes": attrs}
        if events:
            data["events"] = [{"name": n, "timestamp": t, "attributes": a} for n, t, a in events]
        if links:
            data["links"] = [{"trace_id": hex_id(t), "span_id": hex_id(s), "attributes": a}
                             for t, s, a in links]
        level = cats.span_level(status_code, attrs)
        rtype, event = "span", str(attrs.get("telemetry.event") or name)
    if subcategory is None:
        subcategory = str(attrs.get("telemetry.subcategory") or "") or None
    uid = (trace_id + span_id) if (trace_id and any(trace_id) and span_id and any(span_id)) \
        else _content_uid("span", name, start, end, attrs, resource)
    return (
        uid, start, rtype, category, subcategory, component, event, level, name, service,
        hex_id(trace_id), hex_id(span_id), hex_id(parent), _session(attrs),
        _KINDS[kind] if 0 <= kind < 5 else str(kind),
        (end - start) / 1e6 if end and start else None,
        _STATUS[status_code] if 0 <= status_code < 3 else str(status_code), status_msg or None,
        None, None, None, _dumps(data),
        meta if meta is not None and record_meta is None else _meta(resource, scope, scope_version, record_meta),
        *genai.normalise(attrs),
    )


def metric_row(
    rec: Sequence[Any], resource: Mapping[str, Any], category: str, component: str,
    service: str | None, subcategory: str | None, uid: bytes,
) -> tuple[Any, ...]:
    (name, description, unit, mtype, time_ns, start_ns, value, attrs, extra, scope, scope_version) = rec
    data = {"attributes": attrs, **({"description": description} if description else {}), **extra}
    return (
        uid, time_ns, "metric", category, subcategory, component, str(attrs.get("telemetry.event") or name),
        "info", name, service, None, None, None, _session(attrs), None, None, None, None,
        mtype, value, unit or None, _dumps(data), _meta(resource, scope, scope_version), *genai.EMPTY,
    )


def log_row(
    rec: Sequence[Any], resource: Mapping[str, Any], category: str, component: str,
    service: str | None, subcategory: str | None, uid: bytes,
) -> tuple[Any, ...]:
    (time_ns, observed_ns, sev_num, sev_text, body, attrs, trace_id, span_id, event_name, scope,
     scope_version) = rec
    data = {"body": body, "attributes": attrs}
    if sev_text:
        data["severity_text"] = sev_text
    return (
        uid, time_ns or observed_ns, "log", category, subcategory, component,
        str(event_name or attrs.get("telemetry.event") or "log"), cats.severity_level(sev_num or 0),
        event_name or None, service, hex_id(trace_id), hex_id(span_id), None, _session(attrs),
        None, None, None, None, None, None, None, _dumps(data), _meta(resource, scope, scope_version),
        *genai.EMPTY,
    )


def service_of(resource: Mapping[str, Any]) -> str | None:
    svc = resource.get("service.name")
    return str(svc) if svc is not None else None


def rows_from_batch(
    kind: str, resource: Mapping[str, Any], records: Sequence[Sequence[Any]],
    topic: tuple[str, str] | None, uid_base: bytes, rules: Sequence[cats.Rule] = (),
    adjusted: dict[str, int] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Map one decoded batch to rows.

    ``topic`` is (category, component) when the producer already chose them (ZeroMQ path);
    ``None`` means categorise here (OTLP path). ``uid_base`` makes uids of records without their
    own ids deterministic per delivery, e.g. publisher+topic+seq, so a redelivered batch is
    ignored by the unique index instead of stored twice. ``adjusted`` counts the rows whose time
    or duration was set aside (``_sane``), by reason.
    """
    service = service_of(resource)
    now = time.time_ns()
    adjusted = {} if adjusted is None else adjusted
    metas: dict[tuple[Any, Any], str] = {}  # the batch shares one resource: its JSON once per scope
    for i, rec in enumerate(records):
        if kind == "span":
            attrs = rec[9]
            if topic is None:
                has_exc = any(ev[0] == "exception" for ev in rec[10] or ())
                category, sub = cats.categorise_span(rec[0], rec[6], rec[7], attrs, has_exc, rules)
                component = component_of(attrs, rec[12], service)
            else:
                category, component = topic
                sub = None
            scope_key = (rec[12], rec[13])
            meta = metas.get(scope_key)
            if meta is None:
                meta = metas[scope_key] = _meta(resource, rec[12], rec[13])
            yield _sane(_checked(span_row(rec, resource, category, component, service, sub, meta)), now, adjusted)
        elif kind == "metric":
            attrs = rec[7]
            category, sub = cats.categorise_metric(rec[0], attrs, rules)
            component = component_of(attrs, rec[9], service)
            if topic is not None:
                category, component = topic
            row = metric_row(rec, resource, category, component, service, sub, _uid(uid_base, i))
            yield _sane(_checked(row), now, adjusted)
        elif kind == "log":
            attrs = rec[5]
            category, sub = cats.categorise_log(rec[2] or 0, attrs, rec[8] or "", rules)
            component = component_of(attrs, rec[9], service)
            if topic is not None:
                category, component = topic
            row = log_row(rec, resource, category, component, service, sub, _uid(uid_base, i))
            yield _sane(_checked(row), now, adjusted)
        else:
            raise ValueError(f"unknown record kind {kind!r}")


_I64 = 1 << 63


def _checked(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row, if SQLite can store its integers: a timestamp past 2^63 ns (a start time of
    2**64-1) or a metric value outside int64 would fail the whole batch's transaction at insert.
    Raises ValueError, so the receivers reject this record alone (counted) and keep the rest."""
    ts = row[1]
    if ts.__class__ is not int or not 0 <= ts < _I64:
        raise ValueError(f"timestamp {ts!r} is not a time in unix nanoseconds (0 to 2^63-1)")
    value = row[19]  # metric_value
    if value.__class__ is int and not -_I64 <= value < _I64:
        raise ValueError("metric value outside the signed 64-bit range")
    return row


# A row dated further ahead of its arrival than any clock skew would sit in every ``--last``
# window for years (a start time in 2200): its timestamp becomes the arrival time.
FUTURE_SLACK_NS = 3600 * 10**9
# A span shorter than zero or longer than this is a clock step or a bug, not a latency: kept out
# of p95/p99/max (duration_ms NULL), its duration kept in the metadata.
MAX_DURATION_MS = 7 * 86_400 * 1000.0


def _sane(row: tuple[Any, ...], now: int, adjusted: dict[str, int]) -> tuple[Any, ...]:
    """The row with a future timestamp clamped to ``now`` and an absurd span duration set aside;
    what was changed is kept in the row's metadata (``adjusted``) and counted by reason."""
    ts, duration = row[1], row[15]
    future = ts > now + FUTURE_SLACK_NS
    absurd = duration is not None and not 0.0 <= duration <= MAX_DURATION_MS
    if not (future or absurd):
        return row
    out = list(row)
    meta = orjson.loads(row[22])
    kept = meta.setdefault("adjusted", {})
    if future:
        kept["timestamp"] = ts
        out[1] = now
        adjusted["future_timestamp"] = adjusted.get("future_timestamp", 0) + 1
    if absurd:
        kept["duration_ms"] = duration
        out[15] = None
        adjusted["absurd_duration"] = adjusted.get("absurd_duration", 0) + 1
    out[22] = _dumps(meta)
    return tuple(out)


def _uid(base: bytes, index: int) -> bytes:
    return hashlib.blake2b(base + index.to_bytes(4, "big"), digest_size=16).digest()
