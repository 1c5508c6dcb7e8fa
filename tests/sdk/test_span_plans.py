"""The span fast path (span_plans + batches): same records as the general path, never takes a span
whose values were not scanned, and loses nothing on the way through a real socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_telemetry import wire
from otel_telemetry.redact.redactor import RedactionConfig, Redactor
from otel_telemetry.sdk import span_plans
from otel_telemetry.sdk.batches import ReadyBatches
from otel_telemetry.sdk.convert import _Converter
from otel_telemetry.sdk.snapshot import snapshot

KEY = b"k" * 32
# Both versions of the fast path: span_plans.SpanPlans.end and _fastspan.Ender.end (C, when built)
IMPLS = ["python", "c"] if span_plans._fastspan is not None else ["python"]


@pytest.fixture(params=IMPLS)
def impl(request: Any) -> str:
    return request.param


class _Keep(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _spans(make: Any) -> list[ReadableSpan]:
    """Spans ended by ``make(tracer)`` (deterministic ids are not needed: records are compared
    pairwise, span by span)."""
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "plans"}))
    provider.add_span_processor(keep)
    make(provider.get_tracer("lib.a", "1.0"))
    return keep.spans


def _redactor(enabled: bool = True) -> Redactor:
    return Redactor(RedactionConfig(enabled=enabled, pseudonym_key=KEY))


class _Path:
    """One converter with its plans and batches, driven like the transport drives them."""

    def __init__(self, redaction: bool = True, rules: tuple = (), impl: str = "python") -> None:
        red = _redactor(redaction)
        self.conv = _Converter(rules, red)
        self.plans = self.conv.plans
        self.batches = ReadyBatches(b"p" * 16, 1_000_000, self._bad, red.count_pseudonyms, batch=1_000_000)
        self.end: Any = None
        if self.plans is not None:
            self.plans.batches = self.batches
            self.end = self.plans.end if impl == "python" else self.plans.ender(lambda span: None).end
        self.bad: list[tuple[str, int]] = []

    def _bad(self, cat: str, n: int) -> None:
        self.bad.append((cat, n))

    def general(self, span: ReadableSpan) -> Any:
        """The sender thread's way (learn the shape, convert with redaction), through the wire."""
        snap = snapshot(span)
        if self.plans is not None:
            self.plans.learn([snap])
        cat, topic, kind, resource, rec = self.conv.convert(snap, True)
        frames = wire.encode(wire.new_packer(), topic, kind, b"p" * 16, 0, resource, [rec])
        resource, records = wire.decode_payload(wire.decode_header(frames), frames[2])
        return cat, topic, kind, resource, _as_sent(records[0])

    def fast(self, span: ReadableSpan) -> Any | None:
        """The app thread's way, through the wire and back; None if not taken."""
        if self.plans is None or not self.end(span):
            return None
        cat = self.batches._recs[-1][0][0]
        self.batches.drain()
        (msg_cat, topic, frames, count), = self.batches.take_ready()
        header = wire.decode_header(frames)
        resource, records = wire.decode_payload(header, frames[2])
        assert msg_cat == cat and count == header.count == 1 and header.kind == wire.KIND_SPAN_SHAPES
        return cat, topic, wire.KIND_SPANS, resource, _as_sent(records[0])


def _as_sent(rec: list[Any]) -> list[Any]:
    """A decoded SPAN record with its attributes in key order (the two encodings order them
    differently; the stored JSON does not care)."""
    return [*rec[:9], dict(sorted(rec[9].items())), *rec[10:]]


def _attrs(i: int, **extra: Any) -> dict[str, Any]:
    return {"http.request.method": "GET", "http.route": "/items/{id}", "http.response.status_code": 200,
            "user.id": "u-1", "request.seq": i, "cache.hit": True, "latency.ms": 1.5} | extra


def _server_spans(tracer: Any) -> None:
    for i in range(5):
        tracer.start_span("GET /items", kind=SpanKind.SERVER, attributes=_attrs(i)).end()


def test_fast_path_records_equal_the_general_path(impl: str) -> None:
    spans = _spans(_server_spans)
    path, reference = _Path(impl=impl), _Path()
    assert path.fast(spans[0]) is None  # unknown shape
    path.general(spans[0])  # learns the shape, scans the values, caches the pseudonym
    for span in spans[1:]:
        got = path.fast(span)
        assert got is not None
        assert got == reference.general(span)  # category, topic, kind, resource, record
    rec = got[4]
    assert rec[9]["user.id"].startswith("ph_") and rec[9]["request.seq"] == 4
    assert got[0] == "user_interaction"
    # pseudonyms are counted as on the general path, when the batch is encoded
    assert path.conv.redaction_counts() == {"pseudonym": 5}  # 1 general + 4 fast, as 5 general would
    assert path.bad == []


@pytest.mark.parametrize("name, make_late", [
    ("new string value", lambda t: t.start_span("GET /items", kind=SpanKind.SERVER,
                                                attributes=_attrs(9) | {"http.route": "/other"}).end()),
    ("email in a value", lambda t: t.start_span("GET /items", kind=SpanKind.SERVER,
                                                attributes=_attrs(9) | {"http.route": "a@b.example"}).end()),
    ("string in a numeric key", lambda t: t.start_span(
        "GET /items", kind=SpanKind.SERVER, attributes=_attrs(9) | {"request.seq": "+1 415 555 2671"}).end()),
    ("list value", lambda t: t.start_span("GET /items", kind=SpanKind.SERVER,
                                          attributes=_attrs(9) | {"http.route": ["x", "y"]}).end()),
    ("same name and count, other keys", lambda t: t.start_span(
        "GET /items", kind=SpanKind.SERVER,
        attributes={("other." + k if k == "cache.hit" else k): v for k, v in _attrs(9).items()}).end()),
    ("other kind", lambda t: t.start_span("GET /items", kind=SpanKind.CLIENT, attributes=_attrs(9)).end()),
    ("new pseudonym", lambda t: t.start_span("GET /items", kind=SpanKind.SERVER,
                                             attributes=_attrs(9) | {"user.id": "u-2"}).end()),
])
def test_not_taken_unless_every_value_was_scanned(name: str, make_late: Any, impl: str) -> None:
    spans = _spans(lambda t: (_server_spans(t), make_late(t)))
    path, reference = _Path(impl=impl), _Path()
    for span in spans[:5]:
        path.general(span)
    assert path.fast(spans[1]) is not None  # the shape is known
    late = spans[5]
    assert path.fast(late) is None, name
    assert path.general(late) == reference.general(late)  # and the general path redacts it


def test_events_links_status_message_and_value_keys_take_the_general_path(impl: str) -> None:
    def make(t: Any) -> None:
        for _ in range(2):
            s = t.start_span("op", attributes={"a": "x"})
            s.add_event("exception", {"exception.message": "boom"})
            s.end()
        for _ in range(2):
            s = t.start_span("op2", attributes={"a": "x"})
            s.set_status(Status(StatusCode.ERROR, "bad thing"))
            s.end()
        for _ in range(2):
            t.start_span("op3", attributes={"telemetry.category": "ai_research", "a": "x"}).end()
    spans = _spans(make)
    path = _Path(impl=impl)
    for span in spans:
        path.general(span)
    assert all(path.fast(span) is None for span in spans)


def test_rules_turn_the_fast_path_off_and_redaction_off_skips_the_checks(impl: str) -> None:
    from otel_telemetry import categories as cats

    assert _Path(rules=tuple(cats.parse_rules([{"category": "ai_research", "name_prefix": "GET"}]))).plans is None
    spans = _spans(_server_spans)
    path, reference = _Path(redaction=False, impl=impl), _Path(redaction=False)
    path.general(spans[0])
    got = path.fast(spans[1])
    assert got is not None and got == reference.general(spans[1])
    assert got[4][9]["user.id"] == "u-1"  # not pseudonymised: redaction is off


_LONG = st.sampled_from(["", "x" * 31, "x" * 32, "é" * 200, "y" * 256, "z" * 70_000, "\U0001f600" * 9])


@pytest.mark.skipif("c" not in IMPLS, reason="the C fast path is not built here")
@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.text(max_size=40), _LONG), st.integers(-(2**70), 2**70),
                               st.floats(), st.booleans(), st.booleans()), min_size=2, max_size=6),
       single=st.booleans())
def test_c_records_are_the_bytes_msgpack_writes(rows: list[Any], single: bool) -> None:
    """_fastspan writes each record itself: the same bytes msgpack-python writes for the Python
    version's record, for strings of every msgpack length class, ints of every width, floats
    (NaN, inf), bools, root and child spans, one-key shapes; an int msgpack cannot hold as an int
    is not taken (the general path turns it into a string)."""
    def make(t: Any) -> None:
        for text, num, flt, flag, child in rows:
            attrs = {"s": text} if single else {"s": text, "n": num, "f": flt, "b": flag}
            ctx = None
            if child:
                root = t.start_span("root")
                ctx = trace.set_span_in_context(root)
                root.end()
            t.start_span("op", context=ctx, attributes=attrs).end()

    spans = _spans(make)
    py, c = _Path(redaction=False), _Path(redaction=False, impl="c")
    for span in spans:  # learn every shape (root spans too)
        py.general(span)
        c.general(span)
    packer = wire.new_packer()
    for span in spans:
        assert py.end(span)  # redaction off: no value checks in either version
        rec = py.batches._recs[-1][1]
        if c.end(span):
            group, got = c.batches._recs[-1]
            assert got == packer.pack((group[3], *rec[1:]))  # each path numbers its shapes
        else:
            assert any(v.__class__ is int and not -(2**63) <= v < 2**64 for v in rec[7])


def test_the_c_fast_path_is_built_where_a_compiler_is() -> None:
    """make install builds _fastspan (setup.py marks it optional, so a failed build would only
    show here and in the benchmarks)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    assert span_plans._fastspan is not None


def _subscriber(endpoint: str) -> tuple[zmq.Context, zmq.Socket]:
    """A SUB socket bound at ``endpoint`` taking every telemetry topic (it passes its subscription
    on only while the test's thread polls or reads it)."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"telemetry.")
    return ctx, sub


def _received_seqs(sub: zmq.Socket, n: int) -> list[int]:
    """The ``i`` attribute of every span record ``sub`` receives, until ``n`` or 20 s of silence
    (the SUB passes its subscription on only while this thread polls it)."""
    seen: list[int] = []
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while len(seen) < n and poller.poll(20_000):
        topic, header, payload = sub.recv_multipart()
        if topic != b"telemetry._control":
            records = wire.decode_payload(wire.decode_header([topic, header, payload]), payload)[1]
            seen += [rec[9]["i"] for rec in records]
    return seen


def test_through_a_real_socket_nothing_lost_and_counts_exact(tmp_path: Any, impl: str) -> None:
    """A producer process whose spans mostly take the fast path, to a SUB socket: every record
    arrives once, counters are exact, and a partial batch goes out on force_flush."""
    endpoint = f"ipc://{tmp_path}/plans.ipc"
    ctx, sub = _subscriber(endpoint)
    code = textwrap.dedent("""
        import json, sys, otel_telemetry
        from otel_telemetry.sdk import exporter
        slow = [0]  # spans the fast path did not take
        plain = exporter._SpanPublisher._snapshot
        def snapshot(self, span):
            slow[0] += 1
            return plain(self, span)
        exporter._SpanPublisher._snapshot = snapshot
        tel = otel_telemetry.configure("plans", endpoint=sys.argv[1], metrics=False, logs=False,
                                       set_global=False, join_timeout=30)
        tracer = tel.tracer_provider.get_tracer("t")
        def burst(n, start):
            for i in range(start, start + n):
                tracer.start_span("op", attributes={"k": "v", "i": i}).end()
        burst(10, 0)
        tel.force_flush(10)  # the sender has learnt the shape now
        burst(1000, 10)  # 1000 = full app-side batches and a partial one
        ok = tel.force_flush(10)
        burst(3, 2000)  # a partial batch nobody fills: shutdown sends it
        tel.shutdown(10)
        on_end = tel.tracer_provider._active_span_processor.__dict__.get("on_end")
        print(json.dumps(tel.counters() | {"ok": ok, "taken": 1013 - slow[0], "c": on_end is not None}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, endpoint], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OTEL_TELEMETRY_REDACT_KEY="x" * 32,
                                     OTEL_TELEMETRY_SPEEDUPS="1" if impl == "c" else "0"))
    seen = _received_seqs(sub, 1013)
    out, _ = proc.communicate(timeout=60)
    ctx.destroy(linger=0)
    seqs = set(seen)
    assert len(seqs) == len(seen)  # every record once
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["ok"] and counters["taken"] >= 1000  # the fast path carried the later bursts
    assert counters["c"] == (impl == "c")  # the processor's on_end is the C one, or the Python one
    assert seqs == set(range(10)) | set(range(10, 1010)) | set(range(2000, 2003))
    assert counters["sent"] == counters["emitted"] == 1013 and counters["dropped"] == {}


def test_packer_turns_values_msgpack_cannot_pack_into_strings() -> None:
    """Sets, custom objects and ints beyond 64 bits go as a list or a string (wire._default), and
    the packer still works for the next batch."""
    packer = wire.new_packer()
    frames = wire.encode(packer, b"telemetry.ai_research.x", wire.KIND_SPANS, b"p" * 16, 0, {"r": 1},
                         [["n", {"s": {3}, "o": _Keep, "big": 2**80}]])
    _, records = wire.decode_payload(wire.decode_header(frames), frames[2])
    assert records == [["n", {"s": [3], "o": str(_Keep), "big": str(2**80)}]]
    frames = wire.encode(packer, b"telemetry.ai_research.x", wire.KIND_SPANS, b"p" * 16, 0, {}, [["m", 1]])
    assert wire.decode_payload(wire.decode_header(frames), frames[2]) == ({}, [["m", 1]])


def test_a_crashing_sender_counts_what_it_held(tmp_path: Any) -> None:
    """If the sender thread dies on a bug, the records it held (queue, app-side batches, messages
    in hand) are counted as dropped, never just forgotten: emitted == sent + dropped + queued."""
    endpoint = f"ipc://{tmp_path}/crash.ipc"
    ctx, sub = _subscriber(endpoint)
    code = textwrap.dedent("""
        import json, sys, otel_telemetry
        from otel_telemetry.sdk import sender
        def broken(*args, **kwargs):
            raise RuntimeError("a bug in the sender")
        sender.Sender._send_pending = broken
        tel = otel_telemetry.configure("crash", endpoint=sys.argv[1], metrics=False, logs=False,
                                       set_global=False, join_timeout=30)
        tracer = tel.tracer_provider.get_tracer("t")
        for i in range(700):
            tracer.start_span("op", attributes={"k": "v", "i": i}).end()
        tel.force_flush(10)
        tel.shutdown(10)
        print(json.dumps(tel.counters()))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, endpoint], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:  # the SUB socket passes its subscription on only while this thread works it
        while proc.poll() is None:
            if sub.poll(50):
                sub.recv_multipart()
        out, err = proc.communicate(timeout=60)
    finally:
        ctx.destroy(linger=0)
    assert proc.returncode == 0, err
    assert "a bug in the sender" in err  # logged, not raised into the app
    c = json.loads(out.strip().splitlines()[-1])
    assert c["emitted"] == 700 and c["sent"] == 0
    assert c["emitted"] == c["sent"] + sum(c["dropped"].values()) + c["queued"]
    assert c["dropped"].get("shutdown", 0) >= 1


def test_provider_processor_c_hooks_give_way_to_added_processors(tmp_path: Any, impl: str,
                                                                 monkeypatch: Any) -> None:
    """configure()'s processor runs the C on_start/on_end (no Python frame) while it has no
    added processors; add_span_processor puts the Python methods back, which call the added
    ones; session tagging works either way."""
    import otel_telemetry
    from otel_telemetry.sdk.sessions import session

    monkeypatch.setenv("OTEL_TELEMETRY_SPEEDUPS", "1" if impl == "c" else "0")
    tel = otel_telemetry.configure("hooks", endpoint=f"ipc://{tmp_path}/none.ipc", metrics=False, logs=False,
                                   set_global=False, join_timeout=0)
    try:
        proc = tel.tracer_provider._active_span_processor
        assert ("on_end" in vars(proc)) == ("on_start" in vars(proc)) == (impl == "c")
        tracer = tel.tracer_provider.get_tracer("t")

        class _Both(_Keep):
            started: list[Any] = []

            def on_start(self, span: Any, parent_context: Any = None) -> None:
                self.started.append(span)

        with session("s-1"):
            before = tracer.start_span("before")
            before.end()
        assert before.attributes["session.id"] == "s-1"  # tagged by the C on_start (or the Python one)
        plain = tracer.start_span("plain")
        plain.end()
        assert "session.id" not in plain.attributes
        keep = _Both()
        tel.tracer_provider.add_span_processor(keep)
        assert "on_end" not in vars(proc) and "on_start" not in vars(proc)
        with session("s-2"):
            tracer.start_span("after").end()
        tracer.start_span("no session").end()
        assert [s.name for s in keep.started] == [s.name for s in keep.spans] == ["after", "no session"]
        assert keep.spans[0].attributes["session.id"] == "s-2"
        assert "session.id" not in keep.spans[1].attributes
        assert tel.counters()["emitted"] == 4
    finally:
        tel.shutdown(1)


def test_without_the_c_module_configure_uses_the_python_fast_path(tmp_path: Any, monkeypatch: Any) -> None:
    """An install where _fastspan could not be built (setup.py: optional) still works: the
    Python version takes known shapes."""
    import otel_telemetry

    monkeypatch.setattr(span_plans, "_fastspan", None)
    tel = otel_telemetry.configure("no-c", endpoint=f"ipc://{tmp_path}/none.ipc", metrics=False, logs=False,
                                   set_global=False, join_timeout=0)
    try:
        proc = tel.tracer_provider._active_span_processor
        assert "on_end" not in vars(proc) and "on_start" not in vars(proc)
        assert proc._fast_end.__func__ is span_plans.SpanPlans.end
        tracer = tel.tracer_provider.get_tracer("t")
        for i in range(3):
            tracer.start_span("op", attributes={"i": i}).end()
        assert tel.counters()["emitted"] == 3
    finally:
        tel.shutdown(1)


def test_threads_ending_spans_at_once_lose_nothing(tmp_path: Any, impl: str) -> None:
    """Four app threads end spans of one shape at once (the fast path's appends and the encode
    of whoever fills a batch interleave): every record arrives exactly once, counters exact."""
    endpoint = f"ipc://{tmp_path}/threads.ipc"
    ctx, sub = _subscriber(endpoint)
    code = textwrap.dedent("""
        import json, sys, threading, otel_telemetry
        tel = otel_telemetry.configure("threads", endpoint=sys.argv[1], metrics=False, logs=False,
                                       set_global=False, join_timeout=30)
        tracer = tel.tracer_provider.get_tracer("t")
        for i in range(10):
            tracer.start_span("op", attributes={"k": "v", "i": i}).end()
        tel.force_flush(10)  # the shape is learnt
        def work(t):
            for i in range(1500):
                tracer.start_span("op", attributes={"k": "v", "i": 10 + t * 1500 + i}).end()
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        tel.shutdown(10)
        print(json.dumps(tel.counters()))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, endpoint], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OTEL_TELEMETRY_SPEEDUPS="1" if impl == "c" else "0"))
    seen = _received_seqs(sub, 6010)
    out, _ = proc.communicate(timeout=60)
    ctx.destroy(linger=0)
    counters = json.loads(out.strip().splitlines()[-1])
    assert sorted(seen) == list(range(6010))
    assert counters["sent"] == counters["emitted"] == 6010 and counters["dropped"] == {}


def test_shaped_messages_mix_encoded_and_plain_records() -> None:
    """A batch may hold records the C version encoded and tuples from the Python version (two
    publishers of one transport, one made with speedups off): both decode."""
    packer = wire.new_packer()
    tid = bytes(range(16))
    rec = (1, tid, 7, None, 10, 20, ["v"], [3], [])
    shapes = {1: ["op", 0, 0, "lib", None, ["k", "n"]]}
    for records in ([rec, packer.pack(rec)], [packer.pack(rec), rec], [rec, rec], [packer.pack(rec)] * 2):
        frames = wire.encode_shaped(packer, b"telemetry.ai_research.x", b"p" * 16, {"r": 1}, shapes, records)
        resource, out = wire.decode_payload(wire.decode_header(frames), frames[2])
        assert resource == {"r": 1} and len(out) == 2
        assert out[0] == out[1] and out[0][9] == {"k": "v", "n": 3} and out[0][0] == "op"


def test_a_name_keeps_a_plan_per_kind_and_status(impl: str) -> None:
    """The first span of a name may be an ERROR span or another kind: later spans of the same
    name and attribute count but another kind or status get plans of their own (up to
    MAX_PER_KEY per key), instead of taking the general path for ever."""
    kinds = [SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER]

    def make(t: Any) -> None:
        for _ in range(2):
            s = t.start_span("GET /items", kind=SpanKind.SERVER, attributes=_attrs(1))
            s.set_status(Status(StatusCode.ERROR))  # no description: a shape like any other
            s.end()
        for kind in kinds:
            for _ in range(2):
                t.start_span("GET /items", kind=kind, attributes=_attrs(2)).end()

    spans = _spans(make)
    path, reference = _Path(impl=impl), _Path()
    for span in spans:  # learn: ERROR/SERVER first, then SERVER, CLIENT, INTERNAL; no room for more
        path.general(span)
    assert len(path.plans._plans[("GET /items", len(_attrs(1)))]) == span_plans.MAX_PER_KEY
    taken = [path.fast(span) for span in spans]
    assert all(got == reference.general(span) for got, span in zip(taken, spans, strict=True) if got is not None)
    assert [got is not None for got in taken] == [True] * 8 + [False] * 4
    assert taken[0][0] == "error_patterns" and taken[2][0] == "user_interaction"


def test_an_app_thread_sends_ready_messages_itself(tmp_path: Any) -> None:
    """Transport._send_ready (the app thread that encoded a batch, the socket free): stamps
    sequence numbers, sends, counts; leaves to the sender thread what has no subscriber and
    everything while the socket is in other hands. Real sockets, no sender thread."""
    from otel_telemetry.sdk.transport import Transport

    endpoint = f"ipc://{tmp_path}/ready.ipc"
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.XPUB), ctx.socket(zmq.SUB)
    try:
        pub.bind(endpoint)
        sub.connect(endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"telemetry.ai_research")
        assert pub.recv() == b"\x01telemetry.ai_research"
        conv = _Converter((), _redactor())
        t = Transport(endpoint, conv, span_plans=conv.plans)  # never started
        t._sock, t._subs = pub, {b"telemetry.ai_research"}
        packer = wire.new_packer()
        rec = (1, bytes(16), 7, None, 10, 20, [], [], [])

        def message(topic: bytes, n: int) -> Any:
            frames = wire.encode_shaped(packer, topic, b"p" * 16, {}, {1: ["op", 0, 0, "s", None, []]}, [rec] * n)
            return (topic.split(b".")[1].decode(), topic, frames, n)

        t.batches._ready.extend([message(b"telemetry.ai_research.x", 2), message(b"telemetry.ai_research.x", 3),
                                 message(b"telemetry.user_interaction.x", 4), message(b"telemetry.ai_research.x", 1)])
        with t._sock_lock:  # the sender thread is using the socket: nothing happens here
            t._send_ready()
        assert len(t.batches._ready) == 4 and t.counters()["sent"] == 0
        t._send_ready()
        # the first two went, in order; the third has no subscriber: it and what follows wait
        got = [wire.decode_header(sub.recv_multipart()) for _ in range(2)]
        assert [(h.seq, h.count) for h in got] == [(0, 2), (2, 3)]
        assert [m[3] for m in t.batches._ready] == [4, 1]
        c = t.counters()
        assert c["sent"] == 5 and c["queued"] == 5
    finally:
        ctx.destroy(linger=0)
