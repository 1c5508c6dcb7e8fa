"""The OTLP codec: ``decode`` (OTLP protobuf/JSON → wire tuples, for the collector's receivers) and
``encode`` (wire tuples → OTLP requests, for the forwarder and for ``export``). Both directions
serve two sides (the collector and the read side), so the codec sits below both. Needs
``opentelemetry-proto`` (the ``collector`` extra); the app side never imports it.
"""
