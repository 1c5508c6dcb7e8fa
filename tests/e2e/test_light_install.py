"""The light install: an app's venv with the bare package (no extra) sends to a collector that was
installed with the ``collector`` extra, and loads nothing of the collector side.

A fresh venv is made in the test's temporary folder and the package is installed there from a copy
of this checkout, as ``pip install otel-telemetry`` would (dependencies from the registry).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import HERE, CollectorProc

from otel_telemetry.categories import CATEGORIES

ROOT = HERE.parent
EXTRA_ONLY = ("apsw", "click", "yaml", "grpc", "google.protobuf", "opentelemetry.proto")


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bare")
    src = base / "src-copy"
    # A copy, so the build never writes into the checkout (build/, egg-info, the compiled module).
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    env_dir = base / "venv"
    # No pip of its own (ensurepip alone takes seconds): this checkout's pip installs into it.
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                          "--disable-pip-version-check", str(src)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return env_dir


@pytest.mark.timeout(1200)
def test_bare_package_has_no_collector_dependencies(bare_venv: Path) -> None:
    py = str(bare_venv / "bin" / "python")
    code = ("import importlib.util, json\n"
            f"print(json.dumps({{m: importlib.util.find_spec(m.split('.')[0]) is not None for m in {EXTRA_ONLY!r}}}))")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    # `google` may be a namespace from another package; what matters is that protobuf is absent.
    proto = subprocess.run([py, "-c", "import google.protobuf"], capture_output=True, timeout=60).returncode
    assert proto != 0
    found.pop("google.protobuf"), found.pop("opentelemetry.proto")
    assert not any(found.values()), found


@pytest.mark.timeout(1200)
def test_cli_without_the_extra_names_it(bare_venv: Path) -> None:
    out = subprocess.run([str(bare_venv / "bin" / "otel-telemetry"), "collector", "run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "otel-telemetry[collector]" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.timeout(1200)
def test_bare_app_sends_to_a_collector_with_the_extra(bare_venv: Path, collector: CollectorProc) -> None:
    """tests/producer.py (spans in every category, an event, a log) run by the bare venv's Python
    against the collector process started from this checkout's full install: books close exactly,
    and the app had loaded nothing of the collector side."""
    py = str(bare_venv / "bin" / "python")
    check = (
        "import runpy, sys, atexit\n"
        "sys.argv = ['producer.py', '--endpoint', sys.argv[1], '--spans', '600']\n"
        f"atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules if m.startswith({EXTRA_ONLY!r}) "
        "or m.startswith(('otel_telemetry.collector', 'otel_telemetry.store', 'otel_telemetry.query', "
        "'otel_telemetry.otlp', 'otel_telemetry.cli', 'otel_telemetry.dashboard'))), file=sys.stderr))\n"
        f"runpy.run_path({str(HERE / 'producer.py')!r}, run_name='__main__')\n"
    )
    # Not from this checkout: the bare venv's own copy of the package must be the one imported.
    proc = subprocess.Popen([py, "-c", check, collector.endpoint], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(bare_venv))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "LOADED []" in err.decode(), err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert collector.stop() == 0
    stored = collector.counts_by_category()
    gaps = collector.status()["zmq"]["gaps"]
    for cat in CATEGORIES:
        drops = sum(result["counters"]["by_category"].get(cat, {}).get("dropped", {}).values())
        assert result["emitted"].get(cat, 0) == stored.get(cat, 0) + drops + gaps.get(cat, 0), cat
    assert sum(stored.values()) == 601 and result["counters"]["dropped"] == {}
    where = subprocess.run([py, "-c", "import otel_telemetry; print(otel_telemetry.__file__)"],
                           capture_output=True, text=True, cwd=str(bare_venv), timeout=60).stdout
    assert str(bare_venv) in where
