"""OTLP out: ``forwarder`` (consumer and lifecycle), ``config``, ``queue`` (memory or disk),
``client`` (OTLP/gRPC and OTLP/HTTP, retryable vs permanent errors)."""
