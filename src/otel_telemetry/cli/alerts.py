"""``otel-telemetry alerts``: list stored alerts and try alert rules against the database."""

from __future__ import annotations

import time
from typing import Any

import click

from .. import settings
from ..store.alert_state import default_path as default_state_path
from .output import (
    _emit_json,
    _emit_rows,
    _open,
    common_options,
)


def register(main: click.Group) -> None:
    """Attach the ``alerts`` group to the top-level CLI group."""
    main.add_command(alerts)


def _alerts_section(config_path: str) -> Any:
    """The validated ``alerts:`` section of a YAML file (a collector.yaml or an alert rule file)."""
    import yaml

    from ..collector.alerts.config import parse_alert_config

    try:
        with open(config_path) as fh:
            raw = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.UsageError(f"{config_path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise click.UsageError(f"{config_path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or "alerts" not in raw:
        raise click.UsageError(f"{config_path}: no 'alerts:' section")
    try:
        return parse_alert_config(raw["alerts"], f"{config_path}: alerts")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.group("alerts")
def alerts() -> None:
    """List stored alerts and try alert rules against the database.

    \b
    Example:
      otel-telemetry alerts list --state firing
      otel-telemetry alerts test --config collector-config/alerts.example.yaml
    """


def _state_file(alerts_db: str | None, db: str | None) -> str:
    import os.path

    path = alerts_db or default_state_path(str(settings.resolve('db', db)))
    if not os.path.isfile(path):
        raise click.UsageError(f"no alerts database at {path}; the collector creates it when it starts "
                               "(or pass --alerts-db)")
    return path


@alerts.command("list")
@click.option("--state", type=click.Choice(("firing", "resolved", "pending", "all", "rules")), default="all",
              show_default=True, help="firing/resolved/all: one row per firing episode; pending: rules "
                                      "whose condition holds but that have not fired yet; rules: every "
                                      "configured rule (the default AI rules included) with its state.")
@click.option("--rule", default=None, help="Only alerts of this rule (its name or id).")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Most alerts to print, newest first.")
@click.option("--alerts-db", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Alert state file (default: <db>.alerts.db, written by the collector).")
@common_options
def alerts_list(state: str, rule: str | None, limit: int, alerts_db: str | None, db: str | None,
                fmt: str) -> None:
    """Print alerts the collector recorded: what fired, when, its value, when it resolved and who
    acknowledged it; or (--state rules) every rule the collector evaluates.

    \b
    Example:
      otel-telemetry alerts list
      otel-telemetry alerts list --state firing --format json
      otel-telemetry alerts list --state rules
    """
    import apsw

    from ..store.alert_state import list_alerts

    path = _state_file(alerts_db, db)
    try:
        items = list_alerts(path, state, limit, rule)
    except apsw.Error as exc:
        raise click.ClickException(f"alerts database {path}: {exc}") from None
    if state == "pending":
        headers: tuple[str, ...] = ("rule", "state", "pending_since", "value", "evaluated")
    elif state == "rules":
        headers = ("rule", "id", "severity", "kind", "op", "threshold", "state", "value", "is_default", "channels")
    else:
        headers = ("id", "rule", "severity", "state", "fired", "resolved", "value", "last_value", "op",
                   "threshold", "acked", "message")
    if fmt == "json":
        _emit_json(items)
    elif not items and fmt == "table":
        click.echo("no matching alerts", err=True)
    else:
        _emit_rows(fmt, headers, [[a[h] for h in headers] for a in items], {"message": 60})


@alerts.command("test")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True,
              metavar="FILE", help="YAML file with an 'alerts:' section (collector.yaml or a rule file).")
@click.option("--notify", is_flag=True,
              help="Also send alert.triggered to the configured targets for every rule that would fire.")
@common_options
def alerts_test(config_path: str, notify: bool, db: str | None, fmt: str) -> None:
    """Evaluate every rule once against the database now and show its value and whether it would fire.

    Nothing is stored and nothing is sent unless --notify is given. A rule with a ``for`` duration
    fires only after its condition has held that long; here "met" is the condition right now.

    \b
    Example:
      otel-telemetry alerts test --config collector.yaml
      otel-telemetry alerts test --config alerts.yaml --db ./telemetry.db --format json --notify
    """
    from ..collector.alerts.engine import preview, preview_events
    from ..collector.alerts.notify import Notifier

    cfg = _alerts_section(config_path)
    now = time.time_ns()
    with _open(db) as conn:  # an apsw error (e.g. a column the schema lacks) becomes one line
        results = preview(conn, cfg, now)
    headers = ("rule", "kind", "severity", "value", "op", "threshold", "met", "would_fire")
    rows = [(r.name, r.kind, r.severity, v, r.op, r.threshold, met,
             ("no" if not met else "yes" if r.for_s == 0 else f"after {r.for_s:g}s")) for r, v, met in results]
    if fmt == "json":
        _emit_json([dict(zip(headers, row, strict=True)) for row in rows])
    else:
        _emit_rows(fmt, headers, rows)
    if notify:
        notifier = Notifier(cfg.notify)
        notifier.start()
        events = preview_events(cfg, results, now)
        for ev in events:
            notifier.submit(ev)
        wait = max((t.timeout * (t.retries + 1) + t.backoff * 2 ** t.retries * 1.5 for t in cfg.notify),
                   default=0.0)
        notifier.flush(wait + 1.0)
        notifier.shutdown(1.0)
        s = notifier.stats()
        click.echo(f"notifications: {len(events)} events, sent {s['sent']}, failed {s['failed']}, "
                   f"dropped {s['dropped']}, retries {s['retries']}", err=True)


@alerts.command("ack")
@click.argument("name")
@click.option("--by", default=None, help="Who acknowledges (default: $USER).")
@click.option("--note", default=None, help="A note kept with the acknowledgement.")
@click.option("--alerts-db", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Alert state file (default: <db>.alerts.db, written by the collector).")
@common_options
def alerts_ack(name: str, by: str | None, note: str | None, alerts_db: str | None, db: str | None,
               fmt: str) -> None:
    """Acknowledge the firing alert of rule NAME (its name or id): shown in ``alerts list`` and the
    dashboard until the alert resolves. Exit 2 when that rule is not firing.

    \b
    Example:
      otel-telemetry alerts ack "High CPU Usage"
      otel-telemetry alerts ack high_cpu_usage --note "scaling out"
    """
    import os

    import apsw

    from ..store.alert_state import ack

    path = _state_file(alerts_db, db)
    try:
        item = ack(path, name, time.time_ns(), by or os.environ.get("USER"), note)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except apsw.Error as exc:
        raise click.ClickException(f"alerts database {path}: {exc}") from None
    if fmt == "json":
        _emit_json(item)
    else:
        _emit_rows(fmt, tuple(item), [list(item.values())])
