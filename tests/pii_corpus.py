"""The PII corpus of the end-to-end redaction tests, planted in every field the SDK lets an app set.

    python tests/pii_corpus.py --endpoint ENDPOINT --service NAME

runs as a real instrumented process: ``otel_telemetry.configure()`` (redaction on by default,
key from ``OTEL_TELEMETRY_REDACT_KEY``), plants the corpus with :func:`plant`, shuts down and
prints ``{"planted": {...}, "counters": tel.counters()}`` as one JSON line. tests/e2e/test_pii_e2e.py
also calls :func:`plant` on plain SDK providers and ships the result with the official OTLP
exporters.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

# One planted value per detector; SECRETS are the literal parts that must never be stored.
PII = {
    "email": "alice.smith+test@example.com",
    "email_enc": "bob%40example.org",
    "phone_e164": "+14155552671",
    "phone_intl": "+44 20 7946 0958",
    "phone_us": "(415) 555-2671",
    "phone_fr": "06 12 34 56 78",
    "card_visa": "4111 1111 1111 1111",
    "card_mc": "5500-0055-5555-5559",
    "card_amex": "378282246310005",
    "ipv4": "203.0.113.42",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
           "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "bearer": "Bearer 9f8e7d6c5b4a39281706",
    "basic": "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    "url_creds": "postgres://admin:hunter2pw@db.internal:5432/app",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "github": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "openai": "sk-proj-Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF",
    "slack": "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1",
    "kv": "password=Tr0ub4dor&3",
}
TEXT = "user data: " + " | ".join(PII.values())
# Planted literals that must not survive (for kv/basic/url the secret part only); tests/redact/test_redact.py
# uses these too.
SECRETS = [v for k, v in PII.items() if k not in ("kv", "basic", "bearer", "url_creds")] + [
    "Tr0ub4dor", "YWxhZGRpbjpvcGVuc2VzYW1l", "9f8e7d6c5b4a39281706", "hunter2pw",
]
# Fragments of the values above and the literals only the end-to-end fields carry.
E2E_SECRETS = SECRETS + ["alice.smith", "7946 0958", "555-2671", "AKIAIOSFODNN7", "db.password.value-x9",
                         "s3cr3t-cookie-value"]
USER_ID = "user-4242"  # under user.id: pseudonymised, the same HMAC on every path
# Records per call of plant(): spans (2 per round), log records (2 per round), metric points.
SPANS_PER_ROUND, LOGS_PER_ROUND = 2, 2


def _attrs(i: int) -> dict[str, Any]:
    return {
        "note": TEXT,
        "list": [TEXT, PII["phone_us"], PII["email"]],
        "nested": {"deep": {"mail": PII["email"], "cards": [PII["card_visa"]]}},  # kept where the SDK allows
        "user.id": USER_ID,
        "db.password": "db.password.value-x9",
        "http.request.header.cookie": ["s3cr3t-cookie-value"],
        "http.request.header.authorization": [PII["bearer"]],
        "client.address": PII["ipv4"],
        "round": i,
    }


def plant(tracer_provider: Any, meter_provider: Any, logger_provider: Any, rounds: int = 3) -> dict[str, int]:
    """Plant the corpus in every field; returns how many spans / logs / metric points were made
    (metric points are counted after collection: one point per attribute set and instrument)."""
    scope_attrs = {"scope.owner": PII["email"], "scope.note": TEXT}
    tracer = tracer_provider.get_tracer(f"lib {PII['email']}", f"1.0 {PII['phone_e164']}", None, scope_attrs)
    meter = meter_provider.get_meter(f"meter {PII['email']}", f"2.0 {PII['ipv4']}", None, scope_attrs)
    logger = logger_provider.get_logger(f"logger {PII['email']}", f"3.0 {PII['card_amex']}", None, scope_attrs)
    counter = meter.create_counter("pii.requests", unit="1", description=f"counts {TEXT}")  # names: [A-Za-z0-9_.-]
    hist = meter.create_histogram("pii.latency", unit="ms")
    for i in range(rounds):
        with tracer.start_as_current_span(f"GET /users/{PII['email']}", kind=SpanKind.SERVER,
                                          attributes=_attrs(i)) as linked:
            link_ctx = linked.get_span_context()
        with tracer.start_as_current_span(f"checkout {PII['card_visa']}", attributes=_attrs(i),
                                          links=[Link(link_ctx, {"link.note": TEXT, "user.id": USER_ID})]) as span:
            span.add_event(f"event for {PII['email']}", {"detail": TEXT, "list": [PII["jwt"]]})
            try:
                raise ValueError(f"card {PII['card_visa']} declined for {PII['email']} token={PII['openai']}")
            except ValueError as exc:
                span.record_exception(exc, {"extra": TEXT})
            span.set_status(Status(StatusCode.ERROR, f"failed for {PII['email']} at {PII['ipv4']}"))
            logger.emit(body=f"log {TEXT}", severity_number=SeverityNumber.ERROR,
                        severity_text=f"ERROR {PII['email']}", attributes=_attrs(i))
            logger.emit(body={"msg": TEXT, "user": {"email": PII["email"], "phone": PII["phone_intl"]},
                              "items": [TEXT, {"token": PII["github"]}], "password": "Tr0ub4dor"},
                        severity_number=SeverityNumber.WARN, attributes={"structured": True, "note": TEXT},
                        event_name=f"pii.event {PII['email']}")
        attrs = {"customer.mail": PII["email"], "note": TEXT, "user.id": USER_ID, "phone": PII["phone_us"]}
        counter.add(i + 1, attrs)
        hist.record(10.0 * i, attrs)
    return {"spans": SPANS_PER_ROUND * rounds, "logs": LOGS_PER_ROUND * rounds, "metric_points": 2}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()
    import otel_telemetry

    tel = otel_telemetry.configure(
        args.service, endpoint=args.endpoint, join_timeout=10, export_interval=3600, set_global=False,
        resource_attributes={"host.owner": PII["email"], "deployment.note": TEXT, "enduser.id": USER_ID})
    planted = plant(tel.tracer_provider, tel.meter_provider, tel.logger_provider)
    # Python logging too: an exception with PII in its message and traceback.
    logger = logging.getLogger("pii.app")
    logger.addHandler(otel_telemetry.logging_handler(tel))
    try:
        raise RuntimeError(f"lookup failed for {PII['email']} {PII['phone_e164']}")
    except RuntimeError:
        logger.exception("handler crashed for %s", PII["email"])
    planted["logs"] += 1
    ok = tel.shutdown(20)
    print(json.dumps({"planted": planted, "counters": tel.counters(), "shutdown_ok": ok}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
