"""One message on the socket. The only module that knows the frame format.

A data message is three ZeroMQ frames::

    [topic]   b"telemetry.<category>.<component>"   (SUB prefix filtering works on it)
    [header]  struct "!2sBB16sQI": magic b"OT", version, kind | flags, publisher id, seq, count
    [payload] msgpack: [resource_attributes: dict, records: list]

``FLAG_REDACT`` (the high bit of the kind byte) says the app left redaction of the records to the
collector: it sends over an ``ipc://`` or loopback endpoint, so the records never leave the device
before a collector (another process, with its own core) redacts them. A frame without it was
redacted by the app (its endpoint leaves the device) or comes from an app that switched redaction
off. A receiver that does not know the flag rejects the frame (unknown kind): counted, never stored
unredacted.

``seq`` counts RECORDS, not messages, per (publisher, topic): a message carries records
``seq .. seq+count-1`` and the next one on that topic must start at ``seq+count``. A receiver
that sees a larger ``seq`` knows exactly how many records were lost in transport, and for which
category, which is how "nothing lost silently" holds across a collector crash.

Spans converted by the app's fast path (``span_plans``) travel as kind SPAN_SHAPES: the payload is
``[resource, shapes, records]`` where ``shapes`` maps a shape id to ``[name, kind, status_code,
scope_name, scope_version, keys]`` and each record is ``[shape_id, trace_id16, span_id,
parent_span_id|None, start_ns, end_ns, str_values, number_values, pseudonym_values]`` (span ids
as unsigned 64-bit integers; the values of ``keys`` in that order). Attribute keys are not
repeated per span, which is what makes this form cheaper to encode; :func:`decode_payload`
expands it to SPAN tuples, so nothing downstream of the decoder sees the difference.

A SPAN_STARTED message (opt-in ``live_spans``) carries spans that have started and not yet ended,
as SPAN tuples with ``end_ns`` None and status unset, on the topic their span will use. Started
records are not part of the numbered stream: ``seq`` is 0, they are never held for a resend, never
acknowledged and never counted as records; losing one loses a preview, not telemetry. The span
itself follows as usual when it ends.

A control message (topic ``telemetry._control``, kind BYE) is sent on orderly shutdown; its
payload maps every topic the publisher used to the next ``seq`` it would have sent, so records
lost at the very end are counted too.

An acknowledgement travels the other way, from the collector's XSUB socket to every connected
app's XPUB (one frame, which never starts with the subscribe/unsubscribe bytes 0 and 1):
``b"OA" + version + publisher id (16) + msgpack {topic: next_seq}``. It says that every record of
that publisher and topic below ``next_seq`` is committed to the store. Apps keep what they sent
until it is acknowledged and send it again to the next collector (``sdk/replay.py``); an app
ignores acknowledgements for other publishers. A collector that acknowledges also subscribes to
``ACKS_SUBSCRIPTION``, a topic no record uses: an app then knows from the start that
acknowledgements will come, and waits for them at exit (within its shutdown timeout) even when a
busy collector has not sent its first one yet.

Record tuples (all ids are raw bytes; timestamps are unix nanoseconds):

SPAN   (name, trace_id16, span_id8, parent_span_id8|None, start_ns, end_ns, kind, status_code,
        status_message|None, attributes, events[(name, ts_ns, attrs)]|None,
        links[(trace_id16, span_id8, attrs)]|None, scope_name, scope_version)
METRIC (name, description, unit, metric_type, time_ns, start_ns, value|None, attributes,
        extra{count,sum,min,max,bounds,counts,monotonic,temporality}, scope_name, scope_version)
LOG    (time_ns, observed_ns, severity_number, severity_text, body, attributes,
        trace_id16|None, span_id8|None, event_name|None, scope_name, scope_version)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

VERSION = 1
MAGIC = b"OT"
KIND_SPANS, KIND_METRICS, KIND_LOGS, KIND_SPAN_SHAPES, KIND_SPAN_STARTED, KIND_BYE = 1, 2, 3, 4, 5, 9
FLAG_REDACT = 0x80  # on the kind byte: the collector must redact these records
_KIND_MASK = 0x7F
KIND_NAMES = {KIND_SPANS: "span", KIND_METRICS: "metric", KIND_LOGS: "log", KIND_SPAN_SHAPES: "span",
              KIND_SPAN_STARTED: "started", KIND_BYE: "bye"}

_HEADER = struct.Struct("!2sBB16sQI")
HEADER_SIZE = _HEADER.size
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_packer_opts: dict[str, Any] = {"use_bin_type": True, "datetime": False}


class WireError(ValueError):
    """A frame that cannot be decoded; ``reason`` is the counter name it is rejected under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    kind: int
    publisher: bytes
    seq: int
    count: int
    redact: bool = False  # FLAG_REDACT: the app left redaction to the collector


def _default(obj: Any) -> Any:
    # Attribute values outside msgpack's types (bytes-like, sets, custom objects) become strings
    # rather than failing the whole batch.
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)


def new_packer() -> msgpack.Packer:
    """A packer for one thread (msgpack.Packer is not thread-safe)."""
    return msgpack.Packer(default=_default, **_packer_opts)


def encode(
    packer: msgpack.Packer, topic: bytes, kind: int, publisher: bytes, seq: int,
    resource: dict[str, Any], records: list[Any],
) -> list[bytes]:
    return [
        topic,
        _HEADER.pack(MAGIC, VERSION, kind, publisher, seq, len(records)),
        packer.pack([resource, records]),
    ]


def encode_shaped(
    packer: msgpack.Packer, topic: bytes, publisher: bytes, resource: dict[str, Any],
    shapes: dict[int, Any], records: list[Any],
) -> list[bytes]:
    """A SPAN_SHAPES message (see the module docstring). A record may already be its msgpack
    bytes (``_fastspan`` encodes each as it takes it): those are spliced in as they are."""
    header = _HEADER.pack(MAGIC, VERSION, KIND_SPAN_SHAPES, publisher, 0, len(records))
    if bytes not in set(map(type, records)):  # all from the Python fast path
        return [topic, header, packer.pack([resource, shapes, records])]
    pack = packer.pack
    return [topic, header, b"".join((
        packer.pack_array_header(3), pack(resource), pack(shapes), packer.pack_array_header(len(records)),
        *(r if r.__class__ is bytes else pack(r) for r in records),
    ))]


def restamp(header: bytes, seq: int, flags: int = 0) -> bytes:
    """The same header with another sequence number (the sender stamps it at send time) and
    ``flags`` (``FLAG_REDACT`` or 0) on the kind byte."""
    magic, version, kind, publisher, _, count = _HEADER.unpack(header)
    return _HEADER.pack(magic, version, (kind & _KIND_MASK) | flags, publisher, seq, count)


def encode_bye(packer: msgpack.Packer, publisher: bytes, next_seqs: dict[str, int]) -> list[bytes]:
    return [b"telemetry._control", _HEADER.pack(MAGIC, VERSION, KIND_BYE, publisher, 0, 0),
            packer.pack(next_seqs)]


ACK_MAGIC = b"OA"
ACKS_SUBSCRIPTION = b"telemetry._acks"  # subscribed to by a collector that acknowledges
_ACK_PREFIX = 3 + 16  # magic, version, publisher id


def encode_ack(publisher: bytes, next_seqs: dict[bytes, int]) -> bytes:
    """One acknowledgement message (collector side): records below each ``next_seq`` are committed."""
    return ACK_MAGIC + bytes((VERSION,)) + publisher + msgpack.packb(next_seqs, use_bin_type=True)


def decode_ack(msg: bytes) -> tuple[bytes, dict[bytes, int]] | None:
    """(publisher, {topic: next_seq}) of an acknowledgement, or None for anything else (app side:
    never raises)."""
    if len(msg) <= _ACK_PREFIX or msg[:2] != ACK_MAGIC or msg[2] != VERSION:
        return None
    try:
        obj = msgpack.unpackb(msg[_ACK_PREFIX:], raw=True, strict_map_key=False)
    except Exception:
        return None
    if not isinstance(obj, dict) or not all(
            isinstance(k, bytes) and isinstance(v, int) and 0 <= v < 1 << 64 for k, v in obj.items()):
        return None
    return msg[3:_ACK_PREFIX], obj


def decode_header(frames: list[bytes]) -> Header:
    """Validate the frame layout and header; raises :class:`WireError`, never anything else."""
    if len(frames) != 3:
        raise WireError("malformed", f"expected 3 frames, got {len(frames)}")
    raw = frames[1]
    if len(raw) != HEADER_SIZE:
        raise WireError("malformed", f"header of {len(raw)} bytes, expected {HEADER_SIZE}")
    magic, version, kind, publisher, seq, count = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise WireError("malformed", "bad magic")
    if version != VERSION:
        raise WireError("unsupported_version", f"version {version}, this collector speaks {VERSION}")
    redact = bool(kind & FLAG_REDACT)
    kind &= _KIND_MASK
    if kind not in KIND_NAMES or (redact and kind == KIND_BYE):
        raise WireError("malformed", f"unknown kind {kind}")
    return Header(version, kind, publisher, seq, count, redact)


def decode_payload(header: Header, payload: bytes) -> tuple[dict[str, Any], list[Any]] | dict[str, int]:
    """Decode the payload of a validated header; raises :class:`WireError` on any bad input."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise WireError("malformed", f"payload is not msgpack ({type(exc).__name__})") from None
    if header.kind == KIND_BYE:
        if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in obj.items()
        ):
            raise WireError("malformed", "bye payload is not {topic: seq}")
        return obj
    if header.kind == KIND_SPAN_SHAPES:
        if not (isinstance(obj, list) and len(obj) == 3 and isinstance(obj[0], dict)
                and isinstance(obj[1], dict) and isinstance(obj[2], list)):
            raise WireError("malformed", "payload is not [resource, shapes, records]")
        obj = [obj[0], _expand(obj[1], obj[2])]
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], dict)
            and isinstance(obj[1], list)):
        raise WireError("malformed", "payload is not [resource, records]")
    if len(obj[1]) != header.count:
        raise WireError("malformed", f"header says {header.count} records, payload has {len(obj[1])}")
    return obj[0], obj[1]


def _expand(shapes: dict[Any, Any], records: list[Any]) -> list[Any]:
    """SPAN_SHAPES records -> SPAN tuples; WireError on anything that does not fit."""
    table = {}
    for sid, shape in shapes.items():
        if not (isinstance(shape, list) and len(shape) == 6 and isinstance(shape[5], list)):
            raise WireError("malformed", "a span shape is not [name, kind, code, scope, version, keys]")
        if not all(k.__class__ is str for k in shape[5]):
            raise WireError("malformed", "a span shape has a key that is not a string")
        table[sid] = shape
    out = []
    top = 1 << 64
    for rec in records:
        # Per record, only what the shape-level checks above leave open (hostile input is rejected
        # by the same checks as before, in fewer steps: this runs for every span over ZeroMQ).
        try:
            sid_, tid, sid, parent, start, end, svals, nvals, pvals = rec
            shape = table.get(sid_) if sid_.__class__ is int else None
        except (TypeError, ValueError):
            raise WireError("malformed", "a shaped span is not a 9-item array") from None
        if shape is None:
            raise WireError("malformed", "a shaped span names no shape of its message")
        if not (svals.__class__ is list and nvals.__class__ is list and pvals.__class__ is list):
            raise WireError("malformed", "shaped span values are not arrays")
        values = svals + nvals + pvals
        keys = shape[5]
        if len(values) != len(keys):
            raise WireError("malformed", "shaped span values do not match its shape's keys")
        if not (sid.__class__ is int and 0 <= sid < top
                and (parent is None or (parent.__class__ is int and 0 <= parent < top))):
            raise WireError("malformed", "a shaped span's ids are not unsigned 64-bit integers")
        name, kind, code, scope, version = shape[:5]
        out.append([name, tid, sid.to_bytes(8, "big"), parent.to_bytes(8, "big") if parent is not None else None,
                    start, end, kind, code, None, dict(zip(keys, values, strict=False)), None, None, scope,
                    version])  # lengths checked above
    return out
