"""The package layout's rules (docs/architecture.md), read from the modules' imports.

Every ``import`` and ``from ... import`` is read, at any depth (inside functions too), so a deferred
import cannot hide an edge. Three rules:

* each side imports only the sides listed for it in ``ALLOWED`` (the app side never the collector's);
* no import circles between modules;
* an instrumented app (``configure()`` and a span, in a fresh interpreter) loads none of the
  collector's dependencies.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "otel_telemetry"

# side -> the sides it may import (besides itself). A side is a top-level module or subpackage.
CONTRACT = {"wire", "categories", "settings", "_version"}
ALLOWED: dict[str, set[str]] = {
    "_version": set(), "wire": set(), "categories": set(), "settings": {"categories"}, "auth": set(),
    "redact": {"settings"},
    "sdk": CONTRACT | {"redact", "auth"},
    "otlp": {"wire", "categories", "settings"},
    "store": {"categories", "settings"},
    "query": {"store", "otlp", "categories", "settings"},
    "collector": CONTRACT | {"redact", "otlp", "store", "query", "auth"},
    "dashboard": {"query", "store", "categories", "settings", "auth"},
    "cli": CONTRACT | {"redact", "otlp", "store", "query", "collector", "dashboard", "auth"},
    # the public API and the compatibility paths
    "__init__": {"sdk", "redact", "categories", "_version"},
    "exporter": {"sdk"},
    "__main__": {"cli"},
}
# What only the collector side needs (the `collector` extra): an app must never load these.
COLLECTOR_ONLY = ("apsw", "grpc", "click", "yaml", "google.protobuf", "opentelemetry.proto")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, resolved to the module itself (``from pkg import mod``
    is an edge to ``pkg.mod`` when that is a module, else to ``pkg``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "otel_telemetry")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "otel_telemetry":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
    return out


def side(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


GRAPH = {m: imports(p, set(modules()) | {"otel_telemetry.sdk._fastspan"}) for m, p in modules().items()}


def test_every_side_is_declared() -> None:
    undeclared = {side(m) for m in GRAPH} - set(ALLOWED)
    assert not undeclared, f"add these to ALLOWED (and docs/architecture.md): {sorted(undeclared)}"


def test_imports_point_one_way() -> None:
    bad = []
    for mod, deps in GRAPH.items():
        for dep in deps:
            if side(dep) != side(mod) and side(dep) not in ALLOWED[side(mod)]:
                bad.append(f"{mod} imports {dep}")
    assert not bad, "imports against the layout's direction:\n" + "\n".join(sorted(bad))


def test_sdk_never_imports_the_collector_side() -> None:
    # The rule that matters most, spelled out: it would load the collector into every app.
    for mod, deps in GRAPH.items():
        if side(mod) in ("sdk", "redact") or mod in ("otel_telemetry", "otel_telemetry.wire"):
            assert not {side(d) for d in deps} & {"collector", "store", "query", "cli", "dashboard", "otlp"}, mod


def test_no_import_circles() -> None:
    # Tarjan's strongly connected components over the module graph: any component of more than
    # one module (or a module importing itself) is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in GRAPH[v]:
                circles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_deferred_imports(tmp_path: Path) -> None:
    """The reader catches an import inside a function, relative or absolute."""
    pkg = tmp_path / "otel_telemetry" / "sdk"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from ..collector import service\n    import otel_telemetry.store.db\n")
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        found = imports(f, {"otel_telemetry.collector.service"})
    finally:
        SRC = saved
    assert found == {"otel_telemetry.collector.service", "otel_telemetry.store.db"}


@pytest.mark.timeout(60)
def test_an_instrumented_app_loads_nothing_of_the_collector() -> None:
    code = (
        "import sys, otel_telemetry\n"
        "t = otel_telemetry.configure(service_name='layout', endpoint='ipc:///tmp/otel-telemetry-layout-none.ipc',"
        " join_timeout=0)\n"
        "from opentelemetry import trace\n"
        "with trace.get_tracer('t').start_as_current_span('s'): pass\n"
        "t.shutdown(1)\n"  # no collector listens: the full default 30 s would pass for nothing here
        f"print(sorted(m for m in sys.modules if m.startswith({COLLECTOR_ONLY!r}) or "
        "m.startswith(('otel_telemetry.collector', 'otel_telemetry.store', 'otel_telemetry.query', "
        "'otel_telemetry.cli', 'otel_telemetry.dashboard', 'otel_telemetry.otlp'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
