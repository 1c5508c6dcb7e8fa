"""Only the optional C extensions live here (everything else is in pyproject.toml).

``otel_telemetry.sdk._fastspan`` is the span fast path in C; ``otel_telemetry.otlp._fastotlp`` decodes
OTLP trace requests in C. Both are ``optional=True``: without a compiler the install still succeeds
and ``span_plans`` / ``otlp.decode`` use their pure-Python versions (same records)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("otel_telemetry.sdk._fastspan", ["src/otel_telemetry/sdk/_fastspan.c"],
                             extra_compile_args=["-O2"], optional=True),
                   Extension("otel_telemetry.otlp._fastotlp", ["src/otel_telemetry/otlp/_fastotlp.c"],
                             extra_compile_args=["-O2"], optional=True)])
