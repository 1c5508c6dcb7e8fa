"""Only the optional C extension lives here (everything else is in pyproject.toml).

``otel_telemetry.sdk._fastspan`` is the span fast path in C; ``optional=True``: without a compiler the
install still succeeds and ``span_plans`` uses its pure-Python version (same records)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("otel_telemetry.sdk._fastspan", ["src/otel_telemetry/sdk/_fastspan.c"],
                             extra_compile_args=["-O2"], optional=True)])
