"""The local web dashboard (``otel-telemetry dashboard``): a token-protected single-page app over the
collector's database, served by the standard library's HTTP server on loopback.

``api`` answers the JSON endpoints over read-only connections (reusing ``query``, ``ai_stats``,
the rollup tables and the retention code), ``tail`` feeds the live tail, ``server`` routes,
authenticates and adds the security headers; ``static/`` holds the page, its CSS and ES modules.
"""

from __future__ import annotations
