"""A minimal local OTLP/gRPC trace receiver for benchmarks: counts and stores every span.

    python bench/otlp_sink.py --db FILE --ready FILE [--count-file FILE]

Binds 127.0.0.1 on a free port and writes that port to ``--ready`` once serving. Each Export
request is decoded with the official generated stubs, flattened to one row per span and
inserted into SQLite (WAL, synchronous=NORMAL) in ONE transaction; the response is sent only
after the commit, so when an exporter's ``shutdown()`` returns everything it delivered is stored.
On SIGTERM/SIGINT it stops, writes ``{"received": n, "stored": n, "requests": n}`` to
``--count-file`` (if given) and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
from concurrent import futures

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

DDL = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    kind INTEGER,
    status INTEGER,
    service TEXT,
    attributes TEXT NOT NULL,   -- JSON
    resource TEXT NOT NULL      -- JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_ids ON spans(trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
"""
INSERT = ("INSERT INTO spans(trace_id, span_id, parent_span_id, name, start_ns, end_ns, kind, status, "
          "service, attributes, resource) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
          "ON CONFLICT(trace_id, span_id) DO NOTHING")


def _value(v):  # AnyValue -> python
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, db: str) -> None:
        self.conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(DDL)
        self.lock = threading.Lock()  # one writer at a time (the gRPC pool has several threads)
        self.received = 0
        self.stored = 0
        self.requests = 0

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        rows = []
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            service = resource.get("service.name")
            res_json = orjson.dumps(resource).decode()
            for ss in rs.scope_spans:
                for s in ss.spans:
                    rows.append((
                        s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex() or None, s.name,
                        s.start_time_unix_nano, s.end_time_unix_nano, s.kind, s.status.code, service,
                        orjson.dumps(_attrs(s.attributes)).decode(), res_json,
                    ))
        with self.lock:
            before = self.conn.total_changes
            self.conn.execute("BEGIN")
            try:
                self.conn.executemany(INSERT, rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.stored += self.conn.total_changes - before
            self.received += len(rows)
            self.requests += 1
        return trace_service_pb2.ExportTraceServiceResponse()

    def counts(self) -> dict:
        with self.lock:
            return {"received": self.received, "stored": self.stored, "requests": self.requests}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--ready", required=True, help="file to write the bound port to")
    ap.add_argument("--count-file", default=None)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)

    sink = Sink(args.db)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, args.ready)
    while not stop.wait(0.2):
        pass
    server.stop(grace=5).wait(10)
    counts = sink.counts()
    if args.count_file:
        with open(args.count_file, "w") as f:
            json.dump(counts, f)
    sink.conn.close()
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
