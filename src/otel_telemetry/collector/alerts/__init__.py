"""Alerts: ``rules`` (parsing and evaluation over the store), ``engine`` (lifecycle thread and
state), ``notify`` (webhook, Slack, Discord delivery)."""
