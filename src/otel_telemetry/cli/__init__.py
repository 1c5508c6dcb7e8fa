"""``otel-telemetry``, the command line: one module per command group, output formats in ``output``.

Needs the ``collector`` extra (click, pyyaml, apsw, grpcio, opentelemetry-proto). The console
script enters through :func:`run`, which says in one line which extra to install when they are
missing instead of printing an ImportError traceback.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["EXTRA_HINT", "main", "run"]

EXTRA_HINT = ("otel-telemetry: the collector, CLI and dashboard need the 'collector' extra: "
              "pip install 'otel-telemetry[collector]'")
# Top-level modules the collector extra brings (an ImportError naming another module is a real bug).
_EXTRA_MODULES = frozenset({"click", "yaml", "apsw", "grpc", "google"})


def run() -> None:
    """The console script's entry point."""
    try:
        from .commands import main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _EXTRA_MODULES:
            raise
        sys.stderr.write(f"{EXTRA_HINT} (missing module: {exc.name})\n")
        raise SystemExit(2) from None
    main()


def __getattr__(name: str) -> Any:
    # ``from otel_telemetry.cli import main`` (the click group, e.g. for click's CliRunner) keeps
    # working, without importing click when the package is imported for ``run``.
    if name == "main":
        from .commands import main
        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
