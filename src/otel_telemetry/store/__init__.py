"""The database: ``schema`` (DDL), ``db`` (connections), ``writer`` (the one thread that writes),
``rollups``, ``retention``, ``purge``, ``alert_state``. The collector writes through it; ``query``,
the CLI and the dashboard read through it."""
