# authserver — `make run` (dev server) and `make test` (whole suite, services included).
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# What `make run` needs (the server and the CSP kit example), and what the tests, lint and
# benchmarks need besides: two stamps, so that `make run` on a fresh clone installs no test tool.
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-m "not e2e"'`.
PYTEST_ARGS ?=

APT_PACKAGES := chromium postgresql redis-server

.PHONY: install install-test system-deps run test lint bench bench-scale bench-quick

install: $(RUN_STAMP)
install-test: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last successful install. A test
# install already holds everything running needs: then the run stamp is only touched.
$(RUN_STAMP): pyproject.toml | $(PY)
	@if [ -f $(TEST_STAMP) ] && [ $(TEST_STAMP) -nt pyproject.toml ]; then :; \
	else $(PY) -m pip install -q -e '.[examples]'; fi
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,providers,examples]'
	touch $@

# Debian packages for the tests; apt runs only when one of them is missing.
system-deps:
	@missing=0; \
	[ -x /usr/bin/chromium ] || missing=1; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	command -v redis-server >/dev/null 2>&1 || missing=1; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "Installing Debian packages: $(APT_PACKAGES)"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

# The server on AUTHSERVER_PORT (5000) and the CSP kit example on CSPKIT_BASE_URL
# (http://localhost:5001), registered once as an OIDC client; Ctrl-C stops both
# (examples/csp_kit/devserver.py).
run: install
	$(VENV)/bin/authserver db upgrade
	$(PY) -m examples.csp_kit.devserver

lint: install-test
	$(VENV)/bin/ruff check authserver tests bench
	$(VENV)/bin/ruff format --check authserver tests bench
	$(VENV)/bin/mypy

# tests/conftest.py starts (and stops) PostgreSQL, Redis, SMTP and Chromium itself.
test: install-test system-deps lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Every benchmark, on SQLite and on PostgreSQL + Redis (bench/suite.py starts its own), then
# the scale run (1M accounts, 10M login events, 2M passkeys): about 45 minutes on 2 cores.
# `make bench SCALE=0.1` for a shorter scale run; `make bench-quick` proves the harness.
SCALE ?= 1
bench: install-test system-deps
	$(PY) -m bench
	$(PY) -m bench.scale --scale $(SCALE)

bench-scale: install-test system-deps
	$(PY) -m bench.scale --scale $(SCALE)

bench-quick: install-test system-deps
	$(PY) -m bench --quick
