"""The C decoder of OTLP trace requests (``otlp/_fastotlp.c``) against the Python reference.

``decode.decode_traces_pb`` takes the C path unless ``OTEL_TELEMETRY_SPEEDUPS=0``; every test here
decodes the same body both ways and wants the same DecodeResult (batches compared without
``uid_base``, which the C path hashes from the bytes as received) or the same rejection of the
whole body: real OTLP files, the official SDK encoder, hypothesis-built requests (including
fields split in parts, which protobuf merges), garbage, truncations and deep nesting. One test
posts to a real collector process.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import CollectorProc, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.status import Status as SdkStatus

from otel_telemetry import settings as ot_settings
from otel_telemetry.otlp import decode

DATA = [Path(__file__).parents[1] / "data" / "otlp", Path(__file__).parents[3] / "shared" / "data" / "otlp"]
FILES = sorted(p for d in DATA if d.is_dir() for p in d.iterdir() if p.suffix in (".json", ".protobuf-bin"))
HYPO = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run(body: bytes, fast: bool) -> tuple[Any, ...]:
    """("ok", batches without uid_base as repr (NaN-safe, order-exact), rejected, message, uids) or ("err",)."""
    with mock.patch.dict(os.environ, {"OTEL_TELEMETRY_SPEEDUPS": "1" if fast else "0"}):
        try:
            r = decode.decode_traces_pb(body)
        except decode.OtlpDecodeError:
            return ("err",)
    assert r.kind == "span"
    return ("ok", repr([(attrs, records) for attrs, records, _ in r.batches]), r.rejected, r.error_message,
            [uid for *_, uid in r.batches])


def same(body: bytes) -> tuple[Any, ...]:
    """Both decoders agree on ``body``; the C outcome."""
    if decode._fastotlp is None:
        pytest.skip("_fastotlp not built (no compiler at install time)")
    py, c = run(body, False), run(body, True)
    assert c[:4] == py[:4]
    if c[0] == "ok":
        assert run(body, True)[4] == c[4]  # equal input, equal uid_base
        assert all(len(u) == 16 for u in c[4])
    return c


def test_the_c_decoder_is_built_where_a_compiler_is() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    assert decode._fastotlp is not None


def test_speedups_off_takes_the_python_path() -> None:
    if decode._fastotlp is None:
        pytest.skip("_fastotlp not built (no compiler at install time)")
    body = ExportTraceServiceRequest(resource_spans=[{"scope_spans": [{"spans": [{"name": "x"}]}]}]).SerializeToString()
    with mock.patch.object(decode._fastotlp, "decode_traces", side_effect=AssertionError("C path taken")):
        with mock.patch.dict(os.environ, {"OTEL_TELEMETRY_SPEEDUPS": "0"}):
            assert decode.decode_traces_pb(body).batches[0][1][0][0] == "x"
        with mock.patch.dict(os.environ, {"OTEL_TELEMETRY_SPEEDUPS": "1"}), pytest.raises(decode.OtlpDecodeError):
            decode.decode_traces_pb(body)  # the AssertionError of the C stand-in, through _guard


@pytest.mark.parametrize("value", [None, "", "0", "1", "off", " OFF ", "false", "no", "disabled", "on", "yes",
                                   "true", "enabled", "bogus"])
def test_the_switch_reads_the_speedups_setting_as_settings_does(value: str | None) -> None:
    env = {} if value is None else {"OTEL_TELEMETRY_SPEEDUPS": value}
    with mock.patch.dict(os.environ, env):
        if value is None:
            os.environ.pop("OTEL_TELEMETRY_SPEEDUPS", None)
        assert decode._speedups() is ot_settings.resolve("speedups")


def test_without_the_extension_the_python_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "_fastotlp", None)
    monkeypatch.setenv("OTEL_TELEMETRY_SPEEDUPS", "1")
    result = decode.decode_traces_pb((DATA[0] / "trace.protobuf-bin").read_bytes())
    assert result.batches[0][1][0][0] == "I'm a server span"


# -- real files ------------------------------------------------------------------------------------

def _pb_of(path: Path) -> bytes:
    """A file as protobuf: JSON turned into the request decode.py's JSON path builds."""
    raw = path.read_bytes()
    if path.suffix != ".json":
        return raw
    got: list[bytes] = []
    real = decode._map_request

    def grab(sig: Any, resources: Any, acc: Any) -> Any:
        got.append(sig.request(**{sig.resource_field: resources}).SerializeToString())
        return real(sig, resources, acc)

    with mock.patch.object(decode, "_map_request", grab):
        decode.decode_traces_json(raw)
    return got[0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}")
def test_real_files_decode_the_same(path: Path) -> None:
    out = same(_pb_of(path))  # metrics and logs files too: foreign bodies, the same outcome
    if path.name.startswith(("trace", "jaeger", "events", "collector")):
        assert out[0] == "ok" and "'resource_spans" not in out[1]


# -- the official SDK encoder ----------------------------------------------------------------------

def _ctx(t: int, s: int) -> SpanContext:
    return SpanContext(t, s, is_remote=False, trace_flags=TraceFlags(1))


def test_sdk_encoded_spans_with_every_value_type() -> None:
    values: dict[str, Any] = {
        "s": "text ünï €", "empty": "", "b": True, "f": False, "i": -(2**63), "big": 2**63 - 1, "d": 1.5,
        "nan": float("nan"), "inf": float("-inf"), "bytes": b"\x00\xffab", "none": None,
        "arr": ["a", 1, 2.5, True, None, b"\x01", ["nested", [1]], {"k": "v"}],
        "kv": {"a": 1, "b": {"c": [1, {"d": None}]}, "e": []}, "strs": ("x", "y"),
    }
    resource = Resource({"service.name": "svc", "host.ip": "10.0.0.1"})
    scope = InstrumentationScope("lib", "1.2.3")
    spans = [
        ReadableSpan("root", _ctx(1, 2), None, resource, values,
                     [Event("ev", {"e": 1, "arr": [1, 2]}, 123), Event("bare", None, 456)],
                     [Link(_ctx(3, 4), {"l": "x"}), Link(_ctx(5, 6))], SpanKind.SERVER, scope,
                     SdkStatus(StatusCode.ERROR, "boom"), 10, 20),
        ReadableSpan("child", _ctx(1, 7), _ctx(1, 2), resource, {"x": 1}, (), (), SpanKind.CLIENT, scope,
                     SdkStatus(StatusCode.OK), 11, 19),
        ReadableSpan("zero-ids", SpanContext(0, 0, False), None, resource, {}, (), (), SpanKind.CONSUMER, None,
                     SdkStatus(StatusCode.UNSET), 0, 0),
        ReadableSpan("other-resource", _ctx(9, 9), None, Resource({"service.name": "b"}), {}, (), (),
                     SpanKind.PRODUCER, InstrumentationScope("other"), None, 1, 2),
    ]
    body = encode_spans(spans).SerializeToString()
    out = same(body)
    assert out[0] == "ok" and out[2] == 0 and "'boom'" in out[1] and "'00ff6162'" in out[1]


# -- hypothesis: requests of every shape, and fields split in parts ---------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


ID = st.sampled_from([0, 8, 16, 16, 16, 8, 15, 4]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
TEXT = st.text(max_size=12)
SCALAR = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), TEXT),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda d: AnyValue(double_value=d), st.floats()),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=8)),
    st.builds(lambda i: AnyValue(string_value_strindex=i), st.integers(-(2**31), 2**31 - 1)),
    st.just(AnyValue()),
)
ANY = st.recursive(SCALAR, lambda inner: st.one_of(
    st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3)),
    st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])),
              st.lists(st.tuples(TEXT, inner), max_size=3))), max_leaves=8)
KVS = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), st.sampled_from(["a", "b", "", "k.ü"]) | TEXT, ANY),
               max_size=4)
SPAN = st.builds(
    lambda tid, sid, pid, name, kind, t0, t1, attrs, events, links, code, msg: Span(
        trace_id=tid, span_id=sid, parent_span_id=pid, name=name, kind=kind, start_time_unix_nano=t0,
        end_time_unix_nano=t1, attributes=attrs, events=events, links=links, status=Status(code=code, message=msg)),
    ID, ID, ID, TEXT, st.integers(-3, 8), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), KVS,
    st.lists(st.builds(lambda n, t, a: Span.Event(name=n, time_unix_nano=t, attributes=a), TEXT,
                       st.integers(0, 2**64 - 1), KVS), max_size=2),
    st.lists(st.builds(lambda t, s, a: Span.Link(trace_id=t, span_id=s, attributes=a, trace_state="k=v"),
                       ID, ID, KVS), max_size=2),
    st.integers(-2, 4), TEXT)
# A span sent in one or two parts: protobuf merges them (ids last wins, status merged, lists joined).
SPAN_BYTES = st.lists(SPAN, min_size=1, max_size=2).map(lambda parts: b"".join(p.SerializeToString() for p in parts))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    body = b""
    for _ in range(draw(st.integers(1, 3))):
        rs = b"".join(ld(1, ld(1, kv.SerializeToString())) for kv in draw(KVS))  # resource, maybe in parts
        for _ in range(draw(st.integers(0, 2))):
            scope = b"".join(ld(1, p) for p in draw(st.lists(st.sampled_from(
                [b"", ld(1, b"lib"), ld(2, b"1.0"), ld(1, b"other") + ld(3, ld(1, b"k"))]), max_size=2)))
            spans = b"".join(ld(2, s) for s in draw(st.lists(SPAN_BYTES, max_size=3)))
            rs += ld(2, spans + scope if draw(st.booleans()) else scope + spans)  # the scope after its spans
        body += ld(1, rs)
    return body


@HYPO
@given(requests())
def test_hypothesis_requests_decode_the_same(body: bytes) -> None:
    assert same(body)[0] == "ok"


@HYPO
@given(st.lists(st.tuples(st.sampled_from([b"k", b"", b"\xff"]), ANY), min_size=1, max_size=3))
def test_anyvalue_merge_in_parts(parts: list[tuple[bytes, AnyValue]]) -> None:
    """A KeyValue whose key and value come in several parts (oneof replace, arrays/kvlists join)."""
    kv = b"".join(ld(1, k) + ld(2, v.SerializeToString()) for k, v in parts)
    same(ld(1, ld(2, ld(2, ld(9, kv)))))


# -- garbage, truncation, mutation, depth ----------------------------------------------------------

@HYPO
@given(st.binary(max_size=300))
def test_random_bytes_same_outcome(body: bytes) -> None:
    same(body)


@HYPO
@given(requests(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 10**6))
def test_mutated_and_truncated_requests_same_outcome(body: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(body)
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    same(bytes(raw))
    same(body[: cut % (len(body) + 1)])


def test_every_truncation_and_single_byte_change_of_a_real_request() -> None:
    body = (DATA[0] / "trace.protobuf-bin").read_bytes()
    for n in range(len(body)):
        same(body[:n])
    rnd = random.Random(13)
    for pos in range(len(body)):
        raw = bytearray(body)
        raw[pos] = rnd.choice([0x00, 0x80, 0xFF, 0x7F, 0x0A, 0x0B, 0x0C, 0x0E, 0x0F, rnd.randrange(256)])
        same(bytes(raw))


def _span_with(attr_value: bytes) -> bytes:
    return ld(1, ld(2, ld(2, ld(9, ld(1, b"k") + ld(2, attr_value)))))


def _nested(levels: int, field: int) -> bytes:
    value = ld(1, b"x")
    for _ in range(levels):
        value = ld(5, ld(1, value)) if field == 5 else ld(6, ld(1, ld(1, b"k") + ld(2, value)))
    return value


@pytest.mark.parametrize("levels", [0, 1, 30, 31, 32, 33, 46, 47, 48, 49, 50, 500, 20_000])
def test_deep_nesting_same_outcome_at_the_limit(levels: int) -> None:
    """upb refuses messages nested more than 100 deep; so must the C decoder, at the same level."""
    for field in (5, 6):
        if field == 5 or levels < 1000:
            same(_span_with(_nested(levels, field)))
    groups = b"".join(_varint(99 << 3 | 3) for _ in range(levels)) + b"".join(
        _varint(99 << 3 | 4) for _ in range(levels))
    same(ld(1, ld(2, ld(2, groups))))
    same(groups + ld(1, b""))


@pytest.mark.parametrize("body", [
    b"", b"\x0a\x00", b"\x08\x01", b"\x00\x01", b"\x0c", b"\x0b\x0c\x0a\x00", b"\x0b\x0a\x00",
    ld(1, ld(2, ld(2, b"\x2a\x01\xff"))),  # bad UTF-8 in the span name
    ld(1, ld(2, ld(2, b"\x1a\x01\xff"))),  # ... in trace_state, which nobody reads
    ld(1, ld(1, ld(3, ld(3, b"\xed\xa0\x80")))),  # ... a surrogate in an entity ref
    ld(1, ld(2, ld(2, b"\x28" + b"\xff" * 9 + b"\x01"))),  # 10-byte varint: fine
    ld(1, ld(2, ld(2, b"\x28" + b"\xff" * 10 + b"\x01"))),  # 11 bytes: not
    ld(1, ld(2, ld(2, b"\xa8\x80\x80\x80\x80\x00\x01"))),  # a 6-byte tag
    ld(1, ld(2, ld(2, b"\x2e"))), ld(1, ld(2, ld(2, b"\x2f"))),  # wire types 6, 7
    ld(1, ld(2, ld(2, b"\x28\x03" + b"\x39" + b"\x00" * 7))),  # a truncated fixed64
    ld(1, ld(2, ld(2, b"\x9b\x06\x00\x01\x9c\x06"))),  # field 0 inside an unknown group
    ld(1, ld(2, ld(2, b"\x2b\x2c\x4b\x4c"))),  # known fields sent as groups: unknown
    ld(1, ld(2, ld(2, b"\x28\x01" + ld(15, b"\x18\x02\x12\x01a") + ld(15, b"\x18\x01")))),  # status in parts
], ids=repr)
def test_edge_bodies_same_outcome(body: bytes) -> None:
    same(body)


def test_many_keys_through_the_key_cache() -> None:
    """More distinct keys than the C key cache holds, each twice, ASCII and not, up to and past 64 bytes."""
    keys = [f"k{i}" for i in range(3000)] + ["ü" * 3, "x" * 64, "y" * 65, "", "k1"]
    attrs = [KeyValue(key=k, value=AnyValue(int_value=i)) for i, k in enumerate(keys)]
    spans = [Span(name="a", attributes=attrs), Span(name="b", attributes=attrs[::-1])]
    out = same(ExportTraceServiceRequest(resource_spans=[{"scope_spans": [{"spans": spans}]}]).SerializeToString())
    assert out[0] == "ok" and "'k2999': 2999" in out[1]


def test_rejected_spans_counted_and_first_described() -> None:
    spans = [Span(name="ok", trace_id=b"t" * 16, span_id=b"s" * 8),
             Span(name="bad-trace", trace_id=b"t" * 15, span_id=b"s" * 8),
             Span(name="bad-link", trace_id=b"t" * 16, links=[Span.Link(trace_id=b"t" * 16, span_id=b"s" * 3)]),
             Span(name="empty-ids")]
    body = ExportTraceServiceRequest(resource_spans=[{"scope_spans": [{"spans": spans}]}]).SerializeToString()
    out = same(body)
    assert out[2] == 2 and out[3] == "resource_spans[0].scope_spans[0].spans[1]: trace_id has 15 bytes, expected 16"
    assert "'ok'" in out[1] and "'empty-ids'" in out[1] and "bad" not in out[1]


# -- a real collector process ----------------------------------------------------------------------

def test_collector_process_stores_otlp_http_through_the_c_decoder(collector: CollectorProc) -> None:
    """Posted spans = stored + rejected, exactly; a re-sent body stores nothing twice."""
    wait_for(lambda: "otlp_http" in collector.status(), what="status with OTLP endpoints")
    port = int(collector.status()["otlp_http"]["endpoint"].rsplit(":", 1)[1])
    rnd = random.Random(7)
    spans = [Span(name=f"op-{i}", trace_id=rnd.randbytes(15 if i % 10 == 3 else 16), span_id=rnd.randbytes(8),
                  start_time_unix_nano=1_700_000_000_000_000_000 + i, end_time_unix_nano=1_700_000_000_000_001_000 + i,
                  attributes=[KeyValue(key="http.route", value=AnyValue(string_value=f"/r/{i % 7}")),
                              KeyValue(key="n", value=AnyValue(int_value=i))])
             for i in range(200)]
    resource = {"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="fast-otlp"))]}
    body = ExportTraceServiceRequest(resource_spans=[{"resource": resource, "scope_spans": [
        {"scope": {"name": "t"}, "spans": spans}]}]).SerializeToString()
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        status, data = resp.status, resp.read()
        conn.close()
        assert status == 200
        assert ExportTraceServiceResponse.FromString(data).partial_success.rejected_spans == 20
    stored = collector.rows("SELECT count(*), count(DISTINCT span_id) FROM records "
                            "WHERE service = 'fast-otlp' AND type = 'span'")
    assert stored == [(180, 180)] and 180 + 20 == len(spans)
    names = {n for (n,) in collector.rows("SELECT name FROM records WHERE service = 'fast-otlp'")}
    assert names == {f"op-{i}" for i in range(200) if i % 10 != 3}
