# relayguard — `make demo` and `make test` work from a fresh clone (see README.md).
#   make check       the fast inner loop (< 2 min): ruff, mypy, ansible-lint, the unit tests
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
	@# the engine's bytecode, once: an editable install compiles none, and where
	@# PYTHONDONTWRITEBYTECODE is set (containers, CI) every process that imports the engine —
	@# each batch call, the lab's daemons — would compile it again (docs/performance.md)
	$(BIN)/python -m compileall -q src >/dev/null
	@touch $(STAMP)

system-packages:
	@scripts/system-packages.sh

setup: system-packages $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" ANSIBLE_CONFIG=ansible.cfg $(BIN)/ansible-lint --profile production --offline

# The inner loop's tests (make check, < 2 min): the decisions, the probe engine, the reports,
# the Exchange engine against in-process twins, the suite's rules — no ansible-playbook run, no
# real MTA, no artifact build. make test runs these and everything else.
CHECK_TESTS := tests/suite tests/probe tests/report tests/exchange \
	tests/postfix_remediation/test_plan.py tests/postfix_remediation/test_plan_rules.py \
	tests/postfix_remediation/test_validation.py tests/postfix_remediation/test_forward.py \
	tests/postfix_remediation/test_postscreen_instances_plan.py \
	tests/postfix_remediation/test_vantage_spec.py tests/mta/test_exim_plan.py \
	tests/mta/test_sendmail_plan.py tests/exchange_remediation/test_plan.py \
	tests/exchange_remediation/test_write_payloads.py tests/exchange_remediation/test_module_docs.py \
	tests/hostile/test_secrets.py tests/hostile/test_engine_fixes.py tests/postfix/test_nmap_parsing.py \
	--ignore=tests/probe/test_fleet_scale.py --ignore=tests/report/test_browser.py

# Workers (pytest-xdist): as root each worker runs on a private network (tests/support/
# private_network.py), so the lab's fixed loopback addresses never collide; without root the
# suite runs in one process. PYTEST_WORKERS=0 for one process anyway.
PYTEST_WORKERS ?= $(if $(filter 0,$(shell id -u)),4,0)
XDIST := $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile,)

unit: setup
	$(BIN)/pytest -q $(if $(XDIST),-n 2 --dist loadfile,) $(CHECK_TESTS)

# lint and the unit tests side by side (two cores); each one's output printed whole
check: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint unit

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
