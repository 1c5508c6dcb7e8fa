"""The package version, in a module of its own so that any side can read it without importing the
public API (``otel_telemetry/__init__`` loads the SDK side)."""

__version__ = "0.1.0"
