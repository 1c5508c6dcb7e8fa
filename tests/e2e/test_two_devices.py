"""Two devices, one central server, three network namespaces (real partitions, not mocks).

Each collector runs in its own namespace and reaches the sqld in a third one over its own veth
pair. One device's link is cut; its local ingest goes on; it is restarted while offline; the link
comes back; every row reaches the server exactly once, tagged with its instance, and
``stats --by-instance`` on the server shows both devices.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import CollectorProc, run_producer, wait_for
from sqld import Sqld

from otel_telemetry.store.schema import STORED_COLUMNS

pytestmark = pytest.mark.heavy  # see tests/conftest.py: never next to another heavy test

CMP = ", ".join(STORED_COLUMNS)
PORT = 8080


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _in(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=check, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def netns() -> Iterator[dict[str, str]]:
    """Namespaces central / dev-a / dev-b; dev-x reaches central at 10.214.N.1 over veth ``<tag>x``."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the network-namespace test needs root and iproute2")
        pytest.skip("needs root and iproute2 (ip netns)")
    tag = f"ot{os.getpid() % 100000}"
    names = {"central": f"{tag}c", "a": f"{tag}a", "b": f"{tag}b"}
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            _in(ns, "ip", "link", "set", "lo", "up")
        for i, dev in enumerate(("a", "b"), start=1):
            here, there = f"{tag}{dev}0", f"{tag}{dev}1"  # device end, central end
            _ip("link", "add", here, "type", "veth", "peer", "name", there)
            _ip("link", "set", here, "netns", names[dev])
            _ip("link", "set", there, "netns", names["central"])
            _in(names[dev], "ip", "addr", "add", f"10.214.{i}.2/24", "dev", here)
            _in(names[dev], "ip", "link", "set", here, "up")
            _in(names["central"], "ip", "addr", "add", f"10.214.{i}.1/24", "dev", there)
            _in(names["central"], "ip", "link", "set", there, "up")
        yield {**names, "tag": tag}
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its veth ends along


def _device(tmp: Path, ns: str, name: str, url: str) -> CollectorProc:
    c = CollectorProc(tmp, name)
    cfg = yaml.safe_load(c.config.read_text())
    cfg["instance"] = name
    cfg["sync"] = {"url": url, "interval": 0.05, "batch_rows": 500, "timeout": 2}
    c.config.write_text(yaml.safe_dump(cfg))
    c.prefix = ["ip", "netns", "exec", ns]
    return c


def _sync(c: CollectorProc) -> dict:
    return c.status().get("sync") or {}


def _shipped_all(c: CollectorProc) -> bool:
    st = _sync(c)
    return st.get("pending") == 0 and st.get("cursor") == c.rows("SELECT max(id) FROM records")[0][0]


def _central(ns: str, sql: str) -> list[list]:
    """Rows from the server, read from inside its namespace by the CLI's own client."""
    code = ("import json, sys; from otel_telemetry.store import libsql_conn as lc; "
            f"c = lc.Connection('http://127.0.0.1:{PORT}'); "
            "print(json.dumps([[v.hex() if isinstance(v, bytes) else v for v in r] "
            "for r in c.execute(sys.argv[1]).fetchall()]))")
    return json.loads(_in(ns, sys.executable, "-c", code, sql).stdout)


def _local(c: CollectorProc) -> list[list]:
    return [[v.hex() if isinstance(v, bytes) else v for v in r]
            for r in c.rows(f"SELECT {CMP} FROM records WHERE instance = ? ORDER BY uid", (c.config.stem,))]


def test_two_devices_partition_restart_exactly_once(tmp_path: Path, netns: dict[str, str]) -> None:
    server = Sqld(tmp_path, host="0.0.0.0", port=PORT, netns=netns["central"])
    server.start()
    a = _device(tmp_path, netns["a"], "dev-a", f"http://10.214.1.1:{PORT}")
    b = _device(tmp_path, netns["b"], "dev-b", f"http://10.214.2.1:{PORT}")
    try:
        a.start()
        b.start()
        results = {"a": [run_producer(a.endpoint, "--spans", "600")], "b": [run_producer(b.endpoint, "--spans", "600")]}
        wait_for(lambda: _shipped_all(a) and _shipped_all(b), 60, "both devices shipped")

        # Cut dev-a's link: its ingest goes on locally, shipping counts its failures.
        _in(netns["central"], "ip", "link", "set", f"{netns['tag']}a1", "down")
        results["a"].append(run_producer(a.endpoint, "--spans", "900"))
        results["b"].append(run_producer(b.endpoint, "--spans", "300"))
        wait_for(lambda: _sync(a).get("errors", 0) >= 2, 60, "dev-a's failures counted")
        wait_for(lambda: _shipped_all(b), 60, "dev-b unaffected")
        assert _sync(a)["pending"] > 0

        # Restart dev-a while it is offline, and feed it more.
        assert a.stop() == 0
        a.start()
        results["a"].append(run_producer(a.endpoint, "--spans", "300"))
        wait_for(lambda: a.status().get("pid") == a.proc.pid and _sync(a).get("errors", 0) >= 1, 60,  # type: ignore[union-attr]
                 "the restarted dev-a's own status")
        assert _sync(a)["shipped"] == 0  # nothing got out since the restart

        _in(netns["central"], "ip", "link", "set", f"{netns['tag']}a1", "up")
        wait_for(lambda: _shipped_all(a), 90, "dev-a caught up after the link came back")
        assert a.stop() == 0 and b.stop() == 0

        for dev, c in (("a", a), ("b", b)):
            local = _local(c)
            emitted = sum(sum(r["emitted"].values()) for r in results[dev])  # type: ignore[index]
            drops = sum(sum(sum(v.get("dropped", {}).values()) for v in r["counters"]["by_category"].values())
                        for r in results[dev])  # type: ignore[index]
            assert emitted == len(local) + drops
            central = _central(netns["central"], f"SELECT {CMP} FROM records WHERE instance = '{c.config.stem}' "
                                                 "ORDER BY uid")
            assert central == local  # exactly once, every column, tagged with its instance
        total = _central(netns["central"], "SELECT count(*), count(DISTINCT uid) FROM records")[0]
        assert total[0] == total[1] == len(_local(a)) + len(_local(b))

        out = _in(netns["central"], sys.executable, "-m", "otel_telemetry", "stats", "--db",
                  f"http://127.0.0.1:{PORT}", "--last", "1d", "--by-instance", "--format", "json")
        by_instance = json.loads(out.stdout)["by_instance"]
        assert by_instance == {"dev-a": len(_local(a)), "dev-b": len(_local(b))}
    finally:
        for c in (a, b):
            if c.proc is not None:
                c.stop()
        server.stop()
