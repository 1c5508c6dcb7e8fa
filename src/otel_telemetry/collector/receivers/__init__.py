"""Receivers: ZeroMQ (``zmq``) and OTLP over HTTP and gRPC (``otlp_http``, ``otlp_grpc``, sharing
``otlp_ingest``). Each decodes, validates and counts, then hands batches to the pipeline."""
