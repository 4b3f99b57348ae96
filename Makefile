# relayguard — `make demo` and `make test` work from a fresh clone (see README.md).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup system-packages demo test lint unit clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

system-packages:
	@scripts/system-packages.sh

setup: system-packages $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" ANSIBLE_CONFIG=ansible.cfg $(BIN)/ansible-lint --profile production --offline

test: lint
	$(BIN)/pytest -ra

demo: setup
	@scripts/demo.sh

clean:
	rm -rf $(VENV) .lab reports .mypy_cache .ruff_cache .pytest_cache
