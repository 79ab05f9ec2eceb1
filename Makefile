# authserver — `make run` (dev server) and `make test` (whole suite, services included).
SHELL := /bin/bash
.DEFAULT_GOAL := run

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-m "not e2e"'`.
PYTEST_ARGS ?=

APT_PACKAGES := chromium postgresql redis-server

.PHONY: install system-deps run test lint bench bench-scale bench-quick

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,providers]'
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

run: install
	$(VENV)/bin/authserver db upgrade
	$(VENV)/bin/authserver serve

lint: install
	$(VENV)/bin/ruff check authserver tests bench
	$(VENV)/bin/ruff format --check authserver tests bench

# tests/conftest.py starts (and stops) PostgreSQL, Redis, SMTP and Chromium itself.
test: install system-deps lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Every benchmark, on SQLite and on PostgreSQL + Redis (bench/suite.py starts its own), then
# the scale run (1M accounts, 10M login events, 2M passkeys): about 45 minutes on 2 cores.
# `make bench SCALE=0.1` for a shorter scale run; `make bench-quick` proves the harness.
SCALE ?= 1
bench: install system-deps
	$(PY) -m bench
	$(PY) -m bench.scale --scale $(SCALE)

bench-scale: install system-deps
	$(PY) -m bench.scale --scale $(SCALE)

bench-quick: install system-deps
	$(PY) -m bench --quick
