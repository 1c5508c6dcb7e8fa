"""Alerts the way the design documents use them (issue 17 item 7), in a real collector process:

- 001's rules as written: free-text names ("High CPU Usage", "High Error Rate"), severity ERROR,
  per-rule ``notification_channels=["email", "slack"]``;
- an e-mail channel over SMTP with STARTTLS and a password from a file, delivered to a real SMTP
  server on loopback (aiosmtpd) with a self-signed certificate made here;
- 003's payload ``metadata`` with ``region``; ``alerts ack NAME`` shown in ``alerts list``;
- 003's evening daily summary at a configured time.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import CollectorProc, wait_for

from otel_telemetry.cli.commands import main
from otel_telemetry.dashboard.server import Dashboard

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402 - after the importorskip

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI for a certificate")

APP = r"""
import sys
import otel_telemetry

tel = otel_telemetry.configure("fernando-api", endpoint=sys.argv[1], export_interval=3600, join_timeout=10)
# 001: SystemMetric(metric_name="cpu_usage", metric_type=GAUGE, metric_value=85.5, metric_unit="percentage")
tel.meter_provider.get_meter("api").create_gauge("cpu_usage", unit="percentage").set(85.5, {"host.name": "server-01"})
for i in range(11):  # 001's "High Error Rate": more than 10 error events in 5 minutes
    otel_telemetry.record_telemetry("error_patterns", "api", "error_event", level="error", data={"i": i})
print("ok" if tel.shutdown(10) else "shutdown timed out")
"""


class Smtp:
    """A real SMTP server on 127.0.0.1: STARTTLS required, AUTH only over TLS, one account."""

    def __init__(self, tmp: Path, password: str) -> None:
        self.cert, key = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(self.cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(key))
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[tuple[str, bool]] = []
        smtp = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                smtp.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", password.encode())
            smtp.logins.append((mechanism, ok))
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = aiosmtpd_controller.Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=ctx, require_starttls=True,
            authenticator=authenticator, auth_require_tls=True)
        self.controller.start()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class Hooks:
    """A real HTTP server on 127.0.0.1 recording JSON POSTs by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    hooks.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Smtp, Hooks]]:
    smtp, hooks = Smtp(tmp_path, "s3cret-smtp"), Hooks()
    yield smtp, hooks
    smtp.controller.stop()
    hooks.server.shutdown()
    hooks.server.server_close()


def _config(c: CollectorProc, smtp: Smtp, hooks: Hooks, password_file: Path, summary: bool) -> None:
    alerts: dict[str, Any] = {
        "interval": 0.1, "default_rules": False, "service": "fernando-api", "environment": "production",
        "metadata": {"region": "us-east-1"},
        "notify": [
            {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "username": "alerts",
             "password_file": str(password_file), "from": "alerts@example.com", "to": ["ops-team@company.com"],
             "ca_file": str(smtp.cert), "retries": 1},
            {"type": "slack", "url": f"{hooks.base}/slack"},
            {"type": "webhook", "name": "hub", "url": f"{hooks.base}/hub"},
        ],
        "rules": [
            # 001: AlertRule(rule_name="High CPU Usage", condition_config={"metric": "cpu_usage", "operator": ">",
            #   "threshold": 80, "time_window_minutes": 5}, severity=WARNING, notification_channels=["email", "slack"])
            {"name": "High CPU Usage", "kind": "threshold", "metric": "cpu_usage", "op": ">", "threshold": 80,
             "window": "5m", "severity": "warning", "channels": ["email", "slack"]},
            # 001: AlertRule(rule_name="High Error Rate", rule_type="event_frequency", threshold=10,
            #   time_window_minutes=5, severity=SeverityLevel.ERROR)
            {"name": "High Error Rate", "kind": "frequency", "filter": {"level": "error"}, "op": ">", "threshold": 10,
             "window": "5m", "severity": "error", "channels": ["hub"]},
        ]}
    if summary:
        alerts["daily_summary"] = {"at": "00:00", "channels": ["email"]}  # due at once, whatever the time
    c.config.write_text(yaml.safe_dump({"store": {"flush_interval": 0.05}, "retention": {"interval": 3600},
                                        "alerts": alerts}))


def _cli(c: CollectorProc, *args: str) -> Any:
    res = CliRunner().invoke(main, [*args, "--db", c.db, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_design_rules_email_channels_ack_and_daily_summary(tmp_path: Path, servers: tuple[Smtp, Hooks]) -> None:
    smtp, hooks = servers
    password_file = tmp_path / "smtp-password"
    password_file.write_text("s3cret-smtp\n")
    c = CollectorProc(tmp_path)
    _config(c, smtp, hooks, password_file, summary=False)
    c.start()
    try:
        app = subprocess.run([sys.executable, "-c", APP, c.endpoint], capture_output=True, timeout=120)
        assert app.returncode == 0 and app.stdout.strip() == b"ok", app.stderr.decode()[-2000:]
        wait_for(lambda: smtp.messages and hooks.bodies.get("/slack") and hooks.bodies.get("/hub"),
                 what="the e-mail, the Slack and the hub notifications")
        # Per-rule channels: High CPU Usage to email + slack, High Error Rate to the hub only.
        assert smtp.subjects() == ["WARNING ALERT: High CPU Usage (Current: 85.5 | Threshold: > 80)"]
        assert smtp.logins == [("PLAIN", True)]  # the password from the file, after STARTTLS
        mail = smtp.messages[0]
        assert mail["To"] == "ops-team@company.com" and "region: us-east-1" in mail.get_content()
        assert "Current: 85.5 | Threshold: > 80" in mail.get_content()
        assert "High CPU Usage" in hooks.bodies["/slack"][0]["text"] and len(hooks.bodies["/slack"]) == 1
        (hub,) = hooks.bodies["/hub"]
        assert (hub["rule"], hub["rule_id"], hub["severity"], hub["current_value"]) == \
            ("High Error Rate", "high_error_rate", "error", 11)
        assert hub["metadata"] == {"service": "fernando-api", "environment": "production", "region": "us-east-1"}

        # Acknowledge by name (or by its derived id); shown in alerts list.
        ack = CliRunner().invoke(main, ["alerts", "ack", "High CPU Usage", "--by", "ops", "--db", c.db])
        assert ack.exit_code == 0, ack.output
        listed = {a["rule"]: a for a in _cli(c, "alerts", "list", "--state", "firing")}
        assert listed["High CPU Usage"]["acked_by"] == "ops" and listed["High CPU Usage"]["acked"]
        assert listed["High Error Rate"]["acked"] is None
        assert CliRunner().invoke(main, ["alerts", "ack", "high_error_rate", "--db", c.db]).exit_code == 0
        dash = Dashboard(c.db, "test-token-0123456789abcdef", "127.0.0.1", 0)  # the Alerts page's data
        dash.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
            conn.request("GET", "/api/alerts?state=firing", headers={
                "Host": f"127.0.0.1:{dash.port}", "Authorization": f"Bearer {dash.token}"})
            shown = {a["rule"]: a for a in json.loads(conn.getresponse().read())["alerts"]}
            conn.close()
        finally:
            dash.shutdown()
        assert shown["High CPU Usage"]["acked_by"] == "ops" and shown["High Error Rate"]["acked"]
        none = CliRunner().invoke(main, ["alerts", "ack", "No Such Rule", "--db", c.db])
        assert none.exit_code == 2 and "no firing alert" in none.output
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]

    # The evening summary at a configured time, to the e-mail channel only.
    _config(c, smtp, hooks, password_file, summary=True)
    c.start()
    try:
        wait_for(lambda: len(smtp.messages) == 2, what="the daily summary e-mail")
        r0 = c.status().get("alerts", {}).get("rounds", 0)
        wait_for(lambda: c.status().get("alerts", {}).get("rounds", 0) >= r0 + 3, what="three more rounds")
    finally:
        assert c.stop() == 0, c.log.read_text()[-2000:]
    assert len(smtp.messages) == 2  # once a day, not once a round
    summary = smtp.messages[1]
    assert str(summary["Subject"]).startswith("DAILY SUMMARY: fernando-api")
    text = summary.get_content()
    assert "Errors: 11" in text and "Top failures: error_event (11)" in text
    assert "High CPU Usage [warning, firing]" in text and "High Error Rate [error, firing]" in text
    payload = json.loads(text[text.index("{"):])
    assert payload["event_type"] == "summary.daily" and payload["summary"]["errors"] == 11
    assert len(hooks.bodies["/slack"]) == 1 and len(hooks.bodies["/hub"]) == 1  # the summary went to email only


def _event() -> Any:
    from otel_telemetry.collector.alerts.notify import AlertEvent

    return AlertEvent(event_type="alert.triggered", rule="High CPU Usage", severity="warning", timestamp_ns=0,
                      metric="cpu_usage", current_value=85.5, threshold=80, op=">", message="High CPU")


def test_email_failures_are_counted_not_retried_and_config_is_checked(tmp_path: Path,
                                                                      servers: tuple[Smtp, Hooks]) -> None:
    from otel_telemetry.collector.alerts.config import parse_alert_config
    from otel_telemetry.collector.alerts.notify import Notifier

    smtp, _ = servers
    base = {"type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "username": "alerts",
            "from": "alerts@example.com", "to": "ops-team@company.com", "retries": 2, "backoff": 0}
    for target, reason in (({**base, "password_env": "PW", "ca_file": str(smtp.cert)}, "wrong password"),
                           ({**base, "password_env": "PW"}, "certificate not trusted (no ca_file)")):
        cfg = parse_alert_config({"notify": [target], "default_rules": False}, env={"PW": "wrong"})
        n = Notifier(cfg.notify)
        n.start()
        assert n.submit(_event())
        assert n.flush(30), reason
        n.shutdown(5)
        assert (n.stats()["failed"], n.stats()["retries"], n.stats()["sent"]) == (1, 0, 0), reason
    assert smtp.messages == []
    for bad, named in (({**base, "password_env": "PW", "password_file": "/x"}, "not both"),
                       ({**base, "url": "http://x/"}, ".url"),
                       ({"type": "webhook", "url": "http://x/", "smtp_host": "h"}, ".smtp_host"),
                       ({**base, "to": "nobody"}, ".to"),
                       ({**base, "password_file": str(tmp_path / "missing")}, ".password_file"),
                       ({**base, "password_env": "PW", "starttls": False}, ".starttls")):
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            parse_alert_config({"notify": [bad]}, env={"PW": "pw"})
    with pytest.raises(ValueError, match="channel 'pager'"):
        parse_alert_config({"rules": [{"name": "A B", "kind": "frequency", "threshold": 1, "channels": ["pager"]}]})
    with pytest.raises(ValueError, match="duplicate rule name"):
        parse_alert_config({"rules": [{"name": "High CPU", "kind": "frequency", "threshold": 1},
                                      {"name": "high_cpu", "kind": "frequency", "threshold": 1}]})
