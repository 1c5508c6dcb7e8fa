"""``otel-telemetry dashboard``: serve the local web dashboard in the foreground (registered by ``cli/commands.py``)."""

from __future__ import annotations

import os
import secrets
import signal
import threading
from typing import Any

import click

from .. import settings
from .output import _db_path, db_option, retention_policy

TOKEN_ENV = "OTEL_TELEMETRY_DASHBOARD_TOKEN"
VIEWER_TOKEN_ENV = "OTEL_TELEMETRY_DASHBOARD_VIEWER_TOKEN"
MIN_TOKEN_CHARS = 16


def _token(given: str | None) -> tuple[str, bool]:
    """(token, explicitly chosen): --token, else $OTEL_TELEMETRY_DASHBOARD_TOKEN, else a random one."""
    for value in (given, os.environ.get(TOKEN_ENV)):
        if value is not None and value.strip():
            token = value.strip()
            if len(token) < MIN_TOKEN_CHARS:
                raise click.UsageError(f"the dashboard token must have at least {MIN_TOKEN_CHARS} characters")
            return token, True
    return secrets.token_urlsafe(24), False


def check_exposure(host: str, explicit_token: bool) -> None:
    """Like the OTLP receivers' rule: off loopback only with a token chosen on purpose."""
    from ..auth import is_loopback_host

    if not is_loopback_host(host.strip("[]")) and not explicit_token:
        raise click.UsageError(f"--host {host!r} is not loopback: refusing to serve the dashboard there without "
                               f"--token or ${TOKEN_ENV} (anyone on the network could reach it)")


@click.command("dashboard")
@db_option
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port to listen on (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --token or $" + TOKEN_ENV + ".")
@click.option("--token", default=None, metavar="TOKEN",
              help=f"Access token (at least {MIN_TOKEN_CHARS} characters). Default: ${TOKEN_ENV}, "
                   "else a random one printed with the URL.")
@click.option("--viewer-token", default=None, metavar="TOKEN",
              help=f"A second, read-only token (at least {MIN_TOKEN_CHARS} characters): its holder sees every "
                   f"page but cannot change retention. Default: ${VIEWER_TOKEN_ENV}, else none.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Extra Host header name to accept (e.g. the machine's DNS name when bound off "
                   "loopback). Repeatable.")
@click.option("--alerts-db", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Alert state file for the alerts page (default: <db>.alerts.db).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help=f"collector.yaml whose retention settings are the defaults shown "
                   f"(default: ${settings.SETTINGS['config'].env}, else built-in defaults).")
def dashboard_cmd(db: str | None, port: int, host: str, token: str | None, viewer_token: str | None,
                  allow_hosts: tuple[str, ...], alerts_db: str | None, config_path: str | None) -> None:
    """Serve the local web dashboard until Ctrl-C or SIGTERM.

    Pages: overview (collector counters, ingest, host metrics), AI (tokens, cost, latency, agents),
    errors (heat map by component and hour), traces (search and waterfall), live tail, sessions,
    alerts and retention. Read-only except a confirmed retention change. Binds 127.0.0.1; every
    request needs the token: open the printed URL once (it sets a cookie), or send
    ``Authorization: Bearer TOKEN`` to the JSON API under /api/. With --viewer-token, that token
    reads everything and changes nothing (admin: --token). Every API call is in the audit log
    (``otel-telemetry audit``).

    \b
    Example:
      otel-telemetry dashboard
      otel-telemetry dashboard --db ./telemetry.db --port 8080
      OTEL_TELEMETRY_DASHBOARD_TOKEN=$(cat ~/.dash-token) otel-telemetry dashboard --host 192.168.1.5
    """
    from ..dashboard.server import Dashboard

    tok, explicit = _token(token)
    viewer = viewer_token if viewer_token is not None else os.environ.get(VIEWER_TOKEN_ENV)
    viewer = viewer.strip() if viewer and viewer.strip() else None
    if viewer is not None and len(viewer) < MIN_TOKEN_CHARS:
        raise click.UsageError(f"the viewer token must have at least {MIN_TOKEN_CHARS} characters")
    if viewer is not None and viewer == tok:
        raise click.UsageError("the viewer token must differ from the admin token")
    check_exposure(host, explicit)
    path = _db_path(db)
    policy = retention_policy(config_path)
    try:
        dash = Dashboard(path, tok, host, port, alerts_path=alerts_db, policy=policy, allow_hosts=allow_hosts,
                         viewer_token=viewer)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        dash.start()
        click.echo(f"otel-telemetry dashboard: {dash.url}", err=True)
        click.echo("(the token in the URL is the password; Ctrl-C stops)", err=True)
        # A bounded wait, so the main thread returns to the interpreter to run the signal handlers.
        while not stop.wait(0.5):
            continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        dash.shutdown()
    click.echo("dashboard stopped", err=True)


def register(main: click.Group) -> None:
    """Add ``dashboard`` to the ``otel-telemetry`` group."""
    main.add_command(dashboard_cmd)
