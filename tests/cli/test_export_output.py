"""``export -o`` naming something it cannot write: one clear line, exit 2, nothing left behind.
Runs the real command as its own process (the traceback this replaces only showed there)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_telemetry.store import schema
from otel_telemetry.store import writer as store


def _db(path: Path) -> str:
    conn = store.open_writer(str(path))
    rows = []
    for i in range(3):
        values = dict.fromkeys(schema.COLUMNS)
        values.update(uid=i.to_bytes(16, "big"), timestamp=time.time_ns() - i, type="log", level="info",
                      category="component_interactions", component="c", event="e", data='{"body": "x"}', metadata='{}')
        rows.append(tuple(values[c] for c in schema.COLUMNS))
    with conn:
        conn.executemany(f"INSERT INTO records({', '.join(schema.COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(schema.COLUMNS))})", rows)
    conn.close()
    return str(path)


def _export(db: str, output: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_TELEMETRY_")}
    return subprocess.run([sys.executable, "-m", "otel_telemetry", "export", "--db", db, "-o", output],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_export_to_a_directory_is_one_line_exit_2_and_no_part_file(tmp_path: Path, suffix: str) -> None:
    db = _db(tmp_path / "t.db")
    target = tmp_path / "exports"
    target.mkdir()
    proc = _export(db, f"{target}{suffix}")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert lines[0].endswith(f"export: cannot write {target}{suffix}: it is a directory; name a file in it"), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exports", *(p.name for p in tmp_path.glob("t.db*"))])
    assert list(target.iterdir()) == []

    ok = _export(db, str(target / "out.jsonl"))  # a file in it works
    assert ok.returncode == 0, ok.stderr
    assert len((target / "out.jsonl").read_text().splitlines()) == 3
    assert [p.name for p in target.iterdir()] == ["out.jsonl"]
