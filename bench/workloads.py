"""Workloads shared by the benchmarks: what one "request" of the application under test does.

``realistic`` (the default everywhere, issue 13) is the traffic real services produce: values
vary the way real services' do, so every cache in the path sees mostly new values.

* every request: an HTTP server span ``GET /api/v1/items/{id}`` (a low-cardinality name, as the
  semantic conventions ask) whose ``url.path`` holds one of 5,000 item ids, with a unique
  ``request.id``, a client IP out of 50,000, one of 1,000 user ids and one of 40 user agents;
* every 4th request: a child DB span with the statement and the row count;
* every 20th request: a child LLM span with a unique ~700-byte prompt in ``gen_ai.input.messages``
  (one prompt in ten carries an e-mail address or a phone number), token counts and the model.

``constant`` is the old best case (``bench_core._attrs``): one span per request whose values all
repeat but for one integer. It measures caches, not the product; it stays as the best case.

All values are drawn before the timed loop from a seeded generator (the same for every variant),
so the loop measures the application's tracing work, not the benchmark's string making.
"""

from __future__ import annotations

import json
import random
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

WORKLOADS = ("realistic", "constant")
_WORDS = ("summarise the attached report and list the three main risks for the quarter "
          "compare the sales figures of the northern and southern regions then explain the gap "
          "draft a polite reply to the customer who asked about the delayed shipment of order "
          "translate the following paragraph into plain english and keep the tone friendly "
          "which of these options has the lowest cost over five years given the maintenance plan").split()
_AGENTS = [f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{120 + i}.0.0.0 "
           f"Safari/537.36" for i in range(20)] + \
          [f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{i} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
           for i in range(20)]


def spans_per_request(i: int, workload: str) -> int:
    if workload == "constant":
        return 1
    return 1 + (i % 4 == 0) + (i % 20 == 0)


def total_spans(requests: int, workload: str) -> int:
    return sum(spans_per_request(i, workload) for i in range(requests))


def _prompt(rng: random.Random, i: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(110)]
    k = i // 20  # the k-th prompt (one every 20 requests)
    if k % 10 == 3:
        words.insert(rng.randrange(len(words)), f"contact me at jane.doe{i}@example.org")
    elif k % 10 == 7:
        words.insert(rng.randrange(len(words)), f"or call +1 415 555 {1000 + i % 9000:04d}")
    text = f"[ticket {i}] " + " ".join(words)
    return json.dumps([{"role": "system", "parts": [{"type": "text", "content": "You are a helpful assistant."}]},
                       {"role": "user", "parts": [{"type": "text", "content": text}]}])


class Realistic:
    """Pre-drawn values for ``requests`` requests; :meth:`run` does request ``i``."""

    def __init__(self, requests: int, seed: int = 13) -> None:
        rng = random.Random(seed)
        items = [rng.randrange(100_000, 10_000_000) for _ in range(5_000)]
        users = [f"user-{rng.getrandbits(40):010x}" for _ in range(1_000)]
        ips = [f"{rng.choice((10, 172, 192))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
               for _ in range(50_000)]
        self.rows: list[tuple[Any, ...]] = []
        for i in range(requests):
            item = rng.choice(items)
            status = 404 if rng.random() < 0.02 else 200
            self.rows.append((f"/api/v1/items/{item}", f"{rng.getrandbits(128):032x}", rng.choice(ips),
                              rng.choice(users), rng.choice(_AGENTS), status, item,
                              _prompt(rng, i) if i % 20 == 0 else None, rng.randrange(80, 900),
                              rng.randrange(20, 400)))

    def run(self, tracer: Any, i: int) -> None:
        path, rid, ip, user, agent, status, item, prompt, tin, tout = self.rows[i]
        with tracer.start_as_current_span("GET /api/v1/items/{id}", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "http.route": "/api/v1/items/{id}", "url.path": path,
            "url.scheme": "https", "http.response.status_code": status, "request.id": rid,
            "client.address": ip, "user.id": user, "user_agent.original": agent,
            "server.address": "api.example.internal", "server.port": 443,
        }) as span:
            if i % 4 == 0:
                tracer.start_span("SELECT items", kind=SpanKind.CLIENT, attributes={
                    "db.system.name": "postgresql", "db.namespace": "shop", "db.operation.name": "SELECT",
                    "db.query.text": "SELECT id, name, price FROM items WHERE id = $1",
                    "db.response.returned_rows": 1 if status == 200 else 0, "item.id": item,
                }).end()
            if prompt is not None:
                tracer.start_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout,
                    "gen_ai.response.finish_reasons": ("stop",), "gen_ai.input.messages": prompt,
                }).end()
            if status != 200:
                span.set_status(Status(StatusCode.ERROR, "item not found"))


class Constant:
    """The old workload: one span, 10 attributes, every value repeating but ``request.seq``."""

    def __init__(self, requests: int) -> None:
        self.requests = requests

    def run(self, tracer: Any, i: int) -> None:
        tracer.start_span("bench.op", attributes={
            "http.request.method": "GET", "http.route": "/api/v1/items/{id}", "http.response.status_code": 200,
            "server.address": "127.0.0.1", "server.port": 8080, "user.id": "u-12345", "request.seq": i,
            "cache.hit": True, "db.rows": 42, "latency.ms": 3.25,
        }).end()


def make(workload: str, requests: int, seed: int = 13) -> Realistic | Constant:
    """``seed``: warm-ups use another seed than the timed loop, so the loop's values are new."""
    if workload == "realistic":
        return Realistic(requests, seed)
    if workload == "constant":
        return Constant(requests)
    raise ValueError(f"unknown workload {workload!r} (one of {', '.join(WORKLOADS)})")
