"""Redaction of wire tuples (otel_telemetry.redact): PII corpus in every field, false positives,
allow-list, pseudonymisation (incl. a 10^6-candidate dictionary attack), counts, fuzz."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pii_corpus import PII, SECRETS, TEXT

from otel_telemetry import wire
from otel_telemetry.redact.redactor import DETECTORS, RedactionConfig, Redactor, scan_bytes

KEY = "test-key-0123456789abcdef-0123456789"

# The one PII corpus, shared with the end-to-end tests (tests/pii_corpus.py).

FALSE_POSITIVES = [
    "550e8400-e29b-41d4-a716-446655440000", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7",
    "2024-01-15", "2024-01-15T10:20:30.123456Z", "2024-01-15 10:20:30+01:00", "12:34:56", "1.2.3", "v1.2.3.4",
    "3.11.9", "python-requests/2.31.0", "opentelemetry-sdk 1.30.0", "1700000000", "1700000000123456789",
    "1700000000123", "GET /api/v1/items/{id}", "/api/v1/items/123456", "order 12345678 shipped",
    "127.0.0.1", "0.0.0.0", "::1", "std::collections::HashMap", "basic authentication required",
    "bearer token missing", "input_tokens=1234", "gen_ai.usage.output_tokens", "x[1::2]", "01.02.2024",
    "4111 1111 1111 1112", "4111111111111112", "1234-5678-9012-3456", "AbstractSingletonProxyFactoryBean2",
    "/home/Alice/Projects/MyApp2024/src/Main.py", "SELECT * FROM users WHERE id = ?", "task-abcdefghijklmnopqrstuvwxyz",
]


def red(**kw: Any) -> Redactor:
    kw.setdefault("pseudonym_key", KEY)
    return Redactor(RedactionConfig(**kw))


def _attrs() -> dict[str, Any]:
    return {
        "note": TEXT,
        "nested": {"deep": [TEXT, {"x": (TEXT, 1)}], "password": "hunter2pw"},
        "list": [TEXT, 3, None, True],
        "exception.message": f"failed for {PII['email']}",
        "exception.stacktrace": f"Traceback...\n  token={PII['openai']}\nValueError: {PII['card_visa']}",
        "http.request.header.authorization": [PII["bearer"]],
        "db.password": "Tr0ub4dor",
        "raw": TEXT.encode(),
        TEXT[:40]: "key holds PII",
    }


def _span() -> tuple[Any, ...]:
    return (TEXT, b"\x01" * 16, b"\x02" * 8, None, 1, 2, 1, 2, TEXT, _attrs(),
            [(TEXT, 5, _attrs()), ("exception", 6, {"exception.message": TEXT})],
            [(b"\x03" * 16, b"\x04" * 8, _attrs())], TEXT, TEXT)


def _log(body: Any) -> tuple[Any, ...]:
    return (1, 2, 9, TEXT, body, _attrs(), b"\x01" * 16, b"\x02" * 8, TEXT, TEXT, TEXT)


def _metric() -> tuple[Any, ...]:
    return (TEXT, TEXT, TEXT, "gauge", 1, 0, 1.5, _attrs(), {"temporality": TEXT, "bounds": [1.0, 2.0]}, TEXT, TEXT)


def _assert_clean(r: Redactor, obj: Any) -> None:
    raw = wire.new_packer().pack(obj)
    assert scan_bytes(r, raw) == {}
    for secret in SECRETS:
        assert secret.encode() not in raw, secret


def test_corpus_detected_one_by_one() -> None:
    r = red()
    for name, value in PII.items():
        assert r.find(f"x {value} y"), name


@pytest.mark.parametrize("make", ["span", "log_str", "log_struct", "metric", "resource"])
def test_corpus_in_every_field_leaves_no_hit(make: str) -> None:
    r = red()
    if make == "span":
        rec = _span()
        out = r.redact_span(rec)
        assert out[1:8] == rec[1:8] and out[11][0][:2] == rec[11][0][:2]  # ids/timestamps untouched
    elif make == "log_str":
        out = r.redact_log(_log(TEXT))
    elif make == "log_struct":
        out = r.redact_log(_log({"msg": TEXT, "items": [TEXT, {"secret": "s3"}], "api_key": "zzz-123"}))
        assert out[4]["api_key"] == "[REDACTED:sensitive_key]"
    elif make == "metric":
        out = r.redact_metric(_metric())
        assert out[8]["bounds"] == [1.0, 2.0]
    else:
        out = r.redact_resource({"service.name": "shop", "host.ip": PII["ipv4"], "process.command_line": TEXT})
        assert out["service.name"] == "shop"
    _assert_clean(r, out)


def test_redaction_after_msgpack_roundtrip() -> None:
    """Collector side: records arrive as lists (msgpack), the same rules apply."""
    r = red()
    rec = msgpack.unpackb(wire.new_packer().pack(_span()), raw=False, strict_map_key=False)
    _assert_clean(r, r.redact_span(rec))


def test_never_mutates_input_and_no_copy_when_clean() -> None:
    r = red()
    attrs = {"http.route": "/api/{id}", "http.request.method": "GET", "n": 3, "email": PII["email"]}
    before = dict(attrs)
    rec = ("op", b"\x01" * 16, b"\x02" * 8, None, 1, 2, 1, 0, None, attrs, None, None, "scope", "1")
    out = r.redact_span(rec)
    assert attrs == before and out[9] is not attrs and out[9]["email"] == "[REDACTED:email]"
    clean = ("op", b"\x01" * 16, b"\x02" * 8, None, 1, 2, 1, 0, None, {"a": "GET", "b": 1}, None, None, "s", "1")
    for _ in range(3):
        assert r.redact_span(clean) is clean
    log = (1, 2, 9, "INFO", "hello world", {"a": 1}, None, None, None, "s", None)
    assert r.redact_log(log) is log
    metric = ("m", None, "ms", "sum", 1, 0, 2, {"a": "b"}, {"monotonic": True}, "s", None)
    assert r.redact_metric(metric) is metric


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_false_positives_untouched(text: str) -> None:
    r = red()
    assert r.redact_text(text) == text
    assert r.redact_text(f"value: {text}.") == f"value: {text}."


def test_sensitive_keys_replaced_whole() -> None:
    r = red()
    attrs = {"Password": "x", "http.request.header.set-cookie": ["a=b"], "app.api_key": 12345, "ssn": "1",
             "db.user_password": "p", "x.Authorization": "y", "gen_ai.usage.input_tokens": 10, "user.email": "z"}
    out = r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, attrs, None, None, None, None))[9]
    assert out["gen_ai.usage.input_tokens"] == 10
    assert all(v == "[REDACTED:sensitive_key]" for k, v in out.items() if k != "gen_ai.usage.input_tokens")


def test_allow_list_mode() -> None:
    r = red(allow_keys=["http.route", "app.*"])
    attrs = {"http.route": "/x", "app.a": 1, "app.b": PII["email"], "other": "visible?", "telemetry.component": "web"}
    out = r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, attrs, None, None, None, None))[9]
    assert out == {"http.route": "/x", "app.a": 1, "app.b": "[REDACTED:email]", "other": "[REDACTED:not_allowed]",
                   "telemetry.component": "web"}


def test_deny_keys_patterns_callback_and_disable() -> None:
    seen: list[str] = []

    def cb(key: str, value: Any) -> Any:
        seen.append(key)
        if key == "boom":
            raise RuntimeError
        return "CB" if key == "cb.me" else value

    r = red(deny_keys=["internal.note", "*.customer_name"], patterns={"order_ref": r"ORD-\d{6}"}, callback=cb,
            disable=["ipv4"])
    attrs = {"internal.note": "n", "shop.customer_name": "Ann", "ref": "see ORD-123456", "cb.me": "v",
             "boom": "v", "ip": PII["ipv4"]}
    out = r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, attrs, None, None, None, None))[9]
    assert out == {"internal.note": "[REDACTED:denied_key]", "shop.customer_name": "[REDACTED:denied_key]",
                   "ref": "see [REDACTED:order_ref]", "cb.me": "CB", "boom": "[REDACTED:callback_error]",
                   "ip": PII["ipv4"]}
    assert "span.name" in seen and "ref" in seen


def test_disabled_is_identity() -> None:
    r = Redactor.from_env(environ={"OTEL_TELEMETRY_REDACT": "off"})
    rec = _span()
    assert r.redact_span(rec) is rec and not r.enabled
    assert Redactor.from_env(environ={}).enabled and Redactor.from_env(environ={"OTEL_TELEMETRY_REDACT": "1"}).enabled


def _pseudo(r: Redactor, value: Any, key: str = "user.id") -> Any:
    return r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, {key: value}, None, None, None, None))[9][key]


def test_pseudonymisation_stable_keyed_and_idempotent() -> None:
    a, b = red(), red(pseudonym_key="another-key-0123456789abcdef")
    p = _pseudo(a, "user-042")
    assert p.startswith("ph_") and len(p) == 3 + 24 and "042" not in p
    assert _pseudo(a, "user-042") == p == _pseudo(red(), "user-042") == _pseudo(a, "user-042", "enduser.id")
    assert _pseudo(b, "user-042") != p and _pseudo(a, "user-043") != p
    assert _pseudo(a, p) == p  # collector re-redacting app output keeps the same pseudonym
    assert _pseudo(a, 42) == _pseudo(a, "42")
    env = Redactor.from_env(environ={"OTEL_TELEMETRY_REDACT_KEY": KEY})
    assert _pseudo(env, "user-042") == p


def test_pseudonymisation_without_key_redacts(caplog: pytest.LogCaptureFixture) -> None:
    for r in (Redactor.from_env(environ={}), red(pseudonym_key="short")):
        assert _pseudo(r, "user-042") == "[REDACTED:pseudonym_unkeyed]"
        assert _pseudo(r, "user-043") == "[REDACTED:pseudonym_unkeyed]"
        assert r.counts()["pseudonym_unkeyed"] == 2
    warnings = [rec for rec in caplog.records if rec.name == "otel_telemetry.redact"]
    assert len(warnings) == 2 and "user-04" not in caplog.text


def test_dictionary_attack_recovers_nothing() -> None:
    r = red()
    targets = {_pseudo(r, f"user-{i:06d}")[3:] for i in (7, 123456, 999999)}
    wrong = b"wrong-key-0123456789abcdef0123"
    sha256, md5, hmac_new, sha = hashlib.sha256, hashlib.md5, hmac.digest, "sha256"
    recovered = 0
    for i in range(1_000_000):
        cand = b"user-%06d" % i
        if (sha256(cand).hexdigest()[:24] in targets or md5(cand).hexdigest()[:24] in targets
                or hmac_new(wrong, cand, sha).hex()[:24] in targets):
            recovered += 1
    assert recovered == 0
    # The right key does recover them: the attack space was the right one.
    assert sum(hmac_new(KEY.encode(), b"user-%06d" % i, sha).hex()[:24] in targets for i in (7, 8, 999999)) == 2


def test_counts_per_rule_thread_safe_and_value_free() -> None:
    r = red()

    def work() -> None:
        for _ in range(200):
            r.redact_log(_log(f"mail {PII['email']} card {PII['card_visa']}"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = r.counts()
    assert c["email"] >= 800 and c["card"] >= 800
    assert set(c) <= set(DETECTORS) | {"sensitive_key", "pseudonym", "api_key"}
    assert PII["email"] not in repr(c)


def test_hostile_inputs_are_linear() -> None:
    r = red()
    for s in ("+1" * 20000, "1 " * 20000, "a@" * 20000, ":" * 40000, "eyJ." * 10000, "A" * 50000, "0." * 20000):
        r.redact_text(s)  # must finish quickly (pytest-timeout guards the whole test)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
                     st.sampled_from(list(PII.values()) + FALSE_POSITIVES))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner), st.frozensets(st.text(max_size=5), max_size=3),
    st.dictionaries(st.one_of(st.text(), st.integers(), st.sampled_from(["password", "user.id", "x"])), inner,
                    max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(attrs=st.dictionaries(st.text(), _values, max_size=6), body=_values, name=st.one_of(st.text(), _values))
def test_fuzz_never_raises(attrs: dict[str, Any], body: Any, name: Any) -> None:
    r = red(callback=lambda k, v: v)
    r.redact_span((name, b"", b"", None, 0, 0, 0, 0, name, attrs, [(name, 1, attrs)], [(b"", b"", attrs)], name, None))
    r.redact_log((0, 0, 0, name, body, attrs, None, None, name, name, name))
    r.redact_metric((name, name, name, "gauge", 0, 0, 1, attrs, {"x": body}, name, name))
    r.redact_resource(attrs)
    plain = Redactor(RedactionConfig(pseudonym_key=KEY))
    wire.new_packer().pack(plain.redact_log((0, 0, 0, None, body, attrs, None, None, None, None, None)))


# -- the plain-text gate, key sources, config (issue 5 wiring) ------------------------------------

_gate_text = st.text(alphabet=st.sampled_from(list("aAbeEyJxo0123456789.@%:=+-()/_ \t[]\"'k")), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(s=st.one_of(_gate_text, st.sampled_from(list(PII.values()) + FALSE_POSITIVES + [TEXT, "xoxb-1234567890"])))
def test_plain_gate_never_hides_a_hit(s: str) -> None:
    """``redact_scan.scan`` skips the regexes for plain text; the full scan must agree on it."""
    from otel_telemetry.redact import scan as redact_scan

    if len(s) < 6:  # below every detector's shortest match: not scanned at all
        return
    fast: dict[str, int] = {}
    assert (redact_scan.scan(s, frozenset(DETECTORS), [], fast), fast) == _ungated(s)


_ids = st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789abcdefABCDEF")), min_size=6, max_size=48),
    st.text(alphabet=st.sampled_from(list("0123456789abcdef-/+()._")), min_size=6, max_size=40),
    st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 300)] * 4),
    st.builds(lambda n: f"/api/v1/items/{n}", st.integers(0, 10**16)),
    st.sampled_from(["4111111111111111", "4111 1111 1111 1111", "415-555-2671", "+14155552671", "127.0.0.1",
                     "0.0.0.0", "1234567890123", "12345678-1234-1234-1234-123456789012"]),
)


@settings(max_examples=3000, deadline=None)
@given(s=_ids)
def test_id_shortcuts_never_hide_a_hit(s: str) -> None:
    """The shortcuts for hex ids, whole IPv4 addresses and digit runs without separators (issue 13)
    give what the full scan gives, on generated ids, addresses and numbers."""
    from otel_telemetry.redact import scan as redact_scan

    fast: dict[str, int] = {}
    assert (redact_scan.scan(s, frozenset(DETECTORS), [], fast), fast) == _ungated(s)


def _ungated(s: str) -> tuple[str, dict[str, int]]:
    """Every detector's regex over ``s`` in the scan's order with no gate in front: the reference
    the gates of ``scan``/``_full`` must agree with."""
    from otel_telemetry.redact import rules as r
    from otel_telemetry.redact.scan import sub

    hits: dict[str, int] = {}
    s = sub(r.URL_CREDENTIALS, s, "url_credentials", hits, keep=1, tail="@")
    s = sub(r.PRIVATE_KEY, s, "private_key", hits)
    s = sub(r.JWT, s, "jwt", hits)
    s = sub(r.BEARER, s, "bearer", hits, keep=1, check=r.bearer_ok, sep=" ")
    s = sub(r.BASIC, s, "basic_auth", hits, keep=1, check=r.basic_ok, sep=" ")
    s = sub(r.API_KEY, s, "api_key", hits)
    s = sub(r.KV_SECRET, s, "kv_secret", hits, keep=1, check=r.kv_ok)
    s = sub(r.EMAIL, s, "email", hits)
    s = sub(r.IPV6_CANDIDATE, s, "ipv6", hits, check=r.ipv6_ok)
    s = sub(r.CARD, s, "card", hits, check=r.card_ok)
    s = sub(r.IPV4, s, "ipv4", hits, check=r.ipv4_ok)
    s = sub(r.PHONE, s, "phone", hits, check=r.phone_ok)
    s = sub(r.SECRET_RUN, s, "secret_token", hits, check=r.entropy_ok)
    return s, hits


_words = st.lists(st.one_of(st.sampled_from(["the", "report", "token", "key:", "pass=", "call", "+1", "(415)",
                                             "555-2671", "::1", "fe80::1%eth0", "a:b:c:d:e:f:0:1", "sk-",
                                             "ghp_", "AKIA", "eyJhbGciOi.eyJzdWIi.sig", "Bearer", "basic"]),
                            _gate_text, _ids, st.sampled_from(list(PII.values()))), max_size=12)


@settings(max_examples=2000, deadline=None)
@given(words=_words, sep=st.sampled_from([" ", "", "\n", '", "', ":"]))
def test_detector_gates_never_hide_a_hit(words: list[str], sep: str) -> None:
    """``scan`` (its shortcuts and the per-detector gates of the full scan) gives what every regex
    run without a gate gives, on generated text mixing words, ids and the PII corpus."""
    from otel_telemetry.redact import scan as redact_scan

    s = sep.join(words)
    if len(s) < 6:
        return
    fast: dict[str, int] = {}
    assert (redact_scan.scan(s, frozenset(DETECTORS), [], fast), fast) == _ungated(s)


def test_span_name_with_pii_is_redacted_once_its_keys_are_known() -> None:
    """Regression: once a span's attribute keys were known (one pseudonymised), a later span with PII
    in its name took the short path and kept the name as it was."""
    red = Redactor(RedactionConfig(pseudonym_key=KEY))

    def span(name: str, attrs: dict[str, Any]) -> tuple[Any, ...]:
        return (name, b"t" * 16, b"s" * 8, None, 1, 2, 0, 0, None, attrs, None, None, "scope", None)

    red.redact_span(span("op", {"user.id": "u1", "client.address": "127.0.0.1"}))
    out = red.redact_span(span("op alice@example.com", {"user.id": "u1", "client.address": "10.1.2.3"}))
    assert out[0] == "op [REDACTED:email]"
    assert out[9]["client.address"] == "[REDACTED:ipv4]" and out[9]["user.id"].startswith("ph_")


def test_collector_redactor_caches_what_it_redacted() -> None:
    """A value redacted once is not scanned again (its counts still add up per occurrence)."""
    from otel_telemetry.redact import walk as redactor_mod

    red = Redactor(RedactionConfig(pseudonym_key=KEY), cache_size=1 << 16)
    calls = []
    real = redactor_mod.scan
    try:
        redactor_mod.scan = lambda *a: (calls.append(a[0]), real(*a))[1]  # type: ignore[assignment]
        recs = [("op", b"t" * 16, b"s" * 8, None, 1, 2, 0, 0, None, {"client.address": "10.1.2.3"}, None, None,
                 None, None) for _ in range(3)]
        out = [red.redact_span(r) for r in recs]
    finally:
        redactor_mod.scan = real  # type: ignore[assignment]
    assert {o[9]["client.address"] for o in out} == {"[REDACTED:ipv4]"}
    assert calls.count("10.1.2.3") == 1
    assert red.counts() == {"ipv4": 3}


def test_short_slack_token_and_kv_counters() -> None:
    r = red()
    assert r.find("xoxb-1234567890") == {"api_key": 1}
    # Digits under token/key names are counters, not credentials; under password/card names they are.
    assert r.find('{"api_key": 138, "kv_secret": 4, "secret_token": 9}') == {}
    assert r.find("max_token=4096") == {}
    assert r.find("password=123456") == {"kv_secret": 1} and r.find("cvv: 123") == {"kv_secret": 1}
    assert r.find('"authorization":["[REDACTED:sensitive_key]"]') == {}  # a redacted list in JSON


def test_key_file_created_once_private_and_shared(tmp_path: Any) -> None:
    import os
    import stat

    path = tmp_path / "cfg" / "redact.key"
    a = Redactor(RedactionConfig(key_file=str(path)))
    assert not path.exists()  # nothing written until a value is pseudonymised
    p1 = _pseudo(a, "user-042")
    assert p1.startswith("ph_") and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_bytes().strip()) == 64
    b = Redactor(RedactionConfig(key_file=str(path)))  # another process of the same user: same key
    assert _pseudo(b, "user-042") == p1
    assert _pseudo(red(), "user-042") != p1  # a random key, not the test key
    assert [f for f in os.listdir(path.parent) if f != "redact.key"] == []  # no temp files left


def test_unusable_key_file_redacts_whole(tmp_path: Any) -> None:
    (tmp_path / "short.key").write_text("tooshort")
    blocked = tmp_path / "file"
    blocked.write_text("")
    for key_file in (tmp_path / "short.key", blocked / "sub" / "redact.key"):
        r = Redactor(RedactionConfig(key_file=str(key_file)))
        assert _pseudo(r, "user-042") == "[REDACTED:pseudonym_unkeyed]"


def test_app_config_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from otel_telemetry.redact.config import app_config

    monkeypatch.delenv("OTEL_TELEMETRY_REDACT", raising=False)
    monkeypatch.delenv("OTEL_TELEMETRY_REDACT_KEY", raising=False)
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY_FILE", str(tmp_path / "k"))
    assert app_config().enabled and app_config().key_file == str(tmp_path / "k")
    assert not app_config(False).enabled
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT", "off")
    assert not app_config().enabled and not app_config(True).enabled
    assert app_config(RedactionConfig(enabled=True)).enabled  # argument > env
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT", "maybe")
    assert app_config().enabled  # not understood: stays on
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY", KEY)
    cfg = app_config()
    assert cfg.pseudonym_key == KEY and KEY not in repr(cfg)
    assert app_config(RedactionConfig(pseudonym_key="x" * 20)).pseudonym_key == "x" * 20


def test_collector_redaction_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from otel_telemetry.collector.config import ConfigError, load

    monkeypatch.delenv("OTEL_TELEMETRY_REDACT", raising=False)
    monkeypatch.delenv("OTEL_TELEMETRY_REDACT_KEY", raising=False)
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT_KEY_FILE", str(tmp_path / "default.key"))
    cfg_path = tmp_path / "c.yaml"

    def load_with(text: str) -> Any:
        cfg_path.write_text(text)
        return load(str(cfg_path), db=str(tmp_path / "c.db")).redaction

    default = load_with("")
    assert default.config.enabled and not default.redact_zmq
    assert default.config.key_file == str(tmp_path / "default.key")
    for bad, needle in (("redaction: {bogus: 1}", "unknown key 'bogus'"),
                        ("redaction: {disable: [nope]}", "redaction.disable: unknown detector 'nope'"),
                        ("redaction: {patterns: {x: '('}}", "redaction.patterns.x"),
                        ("redaction: {key_env: NOT_SET_ANYWHERE_42}", "redaction.key_env"),
                        ("redaction: {enabled: 'yes'}", "redaction.enabled")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            load_with(bad)
    monkeypatch.setenv("MY_KEY", KEY)
    got = load_with("redaction: {enabled: false, redact_zmq: true, key_env: MY_KEY, deny_keys: [a.b],"
                    " pseudonymize_keys: [session.id], allow_keys: ['http.*'], patterns: {ord: 'ORD-\\d+'}}")
    assert not got.config.enabled and got.redact_zmq and got.config.pseudonym_key == KEY
    assert tuple(got.config.pseudonymize_keys) == ("session.id",) and got.config.allow_keys == ["http.*"]
    monkeypatch.setenv("OTEL_TELEMETRY_REDACT", "on")  # env > file
    assert load_with("redaction: {enabled: false}").config.enabled


def test_collector_batch_drops_and_counts_what_it_cannot_redact() -> None:
    from otel_telemetry.collector.redaction import BatchRedactor, CollectorRedaction

    b = BatchRedactor(CollectorRedaction(RedactionConfig(pseudonym_key=KEY)))
    good = ("op", b"\x01" * 16, b"\x02" * 8, None, 1, 2, 1, 0, None, {"mail": PII["email"]}, None, None, "s", "1")
    bad = ("too", "short")  # not a span tuple: the redactor raises on it
    resource, out, dropped = b.apply("span", {"host.owner": PII["email"]}, [good, bad, good])
    assert dropped == 1 and len(out) == 2 and out[0][9] == {"mail": "[REDACTED:email]"}
    assert resource == {"host.owner": "[REDACTED:email]"}
    c = b.counters()
    assert c["redaction_error"] == 1 and c["records"] == 3 and c["redacted"]["email"] == 3
    assert b.applies("otlp") and not b.applies("zmq")


def test_pseudonym_short_path_still_scans_other_values() -> None:
    r = red()
    for i in range(3):  # the first span classifies the keys, the next ones take the short path
        attrs = {"user.id": "user-042", "route": "/a", "n": i, "mail": "x" if i < 2 else PII["email"]}
        out = r.redact_span(("op", b"", b"", None, 0, 0, 0, 0, None, attrs, None, None, "s", None))[9]
        assert out["user.id"] == _pseudo(r, "user-042") and out["route"] == "/a" and out["n"] == i
        assert attrs["user.id"] == "user-042"  # the caller's dict is never changed
    assert out["mail"] == "[REDACTED:email]"


def test_scan_bytes_reads_a_marker_cut_at_a_page_boundary_as_the_marker() -> None:
    """SQLite splits a long value between its B-tree page and an overflow page (after a 4-byte page
    number): "password=[REDACTED:kv_secret]" can read "password=[R" or "password=" + binary in
    the raw file. The part of a real value before a cut is still found."""
    red = Redactor(RedactionConfig(pseudonym_key="k" * 32))
    assert scan_bytes(red, b"x | password=[R\x00\x00\x00\x1e\x95X\t%") == {}
    assert scan_bytes(red, b"x | password=[\x00\x00\x00\x1e") == {}
    assert scan_bytes(red, b"x | password=\x00\x00\x00$\x93D\x10%\x00<") == {}
    assert scan_bytes(red, b'x | "token": "\x00\x00\x00$\x93D\x10%') == {}
    assert scan_bytes(red, b"x | password=hunter2pw\x00\x00\x00\x1e") == {"kv_secret": 1}
    assert scan_bytes(red, b"x | password=[Rhunter2\x00") == {"kv_secret": 1}
    assert scan_bytes(red, b"x | password=hun\x00\x00\x00$\x93D") == {"kv_secret": 1}


def test_scan_bytes_does_not_read_glued_columns_and_hex_ids_as_a_secret_token() -> None:
    """From a WAL in a CI run: a record header's serial-type bytes read "YP", then the row's column
    texts and its trace and span ids follow back to back. That run is mixed-case with digits but
    no stored value holds it. A real token stays a hit, alone or glued to an id."""
    red = Redactor(RedactionConfig(pseudonym_key="k" * 32))
    wal = (b"\x00\x11T\xbe\xac\xadlv\xb8_\x07\xf7\x95?\xc8LM<\x18\xef\x11\xdd\x12.YPlogerror_patternslog_error"
           b"logger_redacted-emaillogerrorpii-netnsa9823b426bbe05d018741995760c61a2eb1f4fbc95c5620d"
           b'{"body":"log user da')
    assert red.find(wal.decode("latin-1")).get("secret_token") == 1  # what the raw detector alone says
    assert scan_bytes(red, wal) == {}
    token = b"Zx9QwE3rTy7UiOp1AsDfGhJkLzXcVbNm"
    assert scan_bytes(red, b"\x00" + token + b"\x00") == {"secret_token": 1}
    assert scan_bytes(red, b"\x12" + token + b"a9823b426bbe05d018741995760c61a2") == {"secret_token": 1}
    assert scan_bytes(red, b"\x12a9823b426bbe05d0" + token + b"\x00") == {"secret_token": 1}
