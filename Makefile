# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py src/otel_telemetry/sdk/_fastspan.c src/otel_telemetry/otlp/_fastotlp.c
	@# apsw-sqlite3mc ships the same `apsw` module as plain apsw: an older venv must drop apsw first.
	@if $(BIN)/python -m pip show -q apsw >/dev/null 2>&1; then $(BIN)/python -m pip uninstall -q -y apsw apsw-sqlite3mc; fi
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff check src tests bench examples

test: install lint
	@# Browser tests drive Debian's chromium through Playwright (never a browser download).
	@[ -x /usr/bin/chromium ] || command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)
	$(BIN)/python -m pytest -q

# The realistic workload (bench/workloads.py) is the target; the constant one is the best case.
bench: install
	$(BIN)/python bench/bench_core.py --workload realistic,constant --repeat 5

clean:
	rm -rf $(VENV) demo-data build *.egg-info src/*.egg-info
