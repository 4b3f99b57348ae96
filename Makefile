# relayguard — `make demo` and `make test` work from a fresh clone (see README.md).
#   make check       the fast inner loop (< 2 min): ruff, mypy, ansible-lint, unit tests
#   make test        everything CI runs: lint, sanity, the whole pytest suite
#   make sanity      ansible-test sanity on the built artifact, ansible-core 2.17 .. newest
#   make collection  the collection artifact dist/relayguard-mail-<version>.tar.gz
#   make ee          the execution environment's build context (context/), from the artifacts
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: setup system-packages demo test lint check unit sanity collection ee clean

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

# The unit tests: no lab, no real server, no root, no artifact builds (tests/collection and the
# EE context run in make test).
CHECK_TESTS := -m "not realserver and not root" --ignore=tests/lab --ignore=tests/lab_winrm \
	--ignore=tests/collection --ignore=tests/test_execution_environment.py

# Workers (pytest-xdist): as root each worker runs on a private network (tests/support/
# private_network.py), so the lab's fixed loopback addresses never collide; without root the
# suite runs in one process. PYTEST_WORKERS=0 for one process anyway.
PYTEST_WORKERS ?= $(if $(filter 0,$(shell id -u)),4,0)
XDIST := $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile,)

unit: setup
	$(BIN)/pytest -q $(if $(XDIST),-n 2 --dist loadfile,) $(CHECK_TESTS)

check: lint unit

sanity: setup
	@scripts/sanity.sh

collection: setup
	$(BIN)/ansible-galaxy collection build --force --output-path dist

ee: setup
	@BIN=$(BIN) scripts/ee.sh

test: lint sanity
	$(BIN)/pytest -ra --durations=25 $(XDIST)

demo: setup
	@scripts/demo.sh

clean:
	rm -rf $(VENV) .lab reports .mypy_cache .ruff_cache .pytest_cache dist context
# .venv-sanity/ and .venv-cache/ (cached ansible-core venvs) survive make clean: rm -rf them by hand
