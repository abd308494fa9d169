# pvs-bridge: `make demo` and `make test` work on a fresh clone; both set up .venv first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.dev-stamp
PYTHON ?= python3

.PHONY: demo test lint format unit lab bench chaos clean

# The virtualenv itself (python3-venv is installed when this Python lacks venv).
$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv python3-dev gcc >/dev/null; \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip

# What the bridge needs to run (the demo needs nothing more).
$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[speed]'
	@touch $@

# Everything the tests, linters and the lab need.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,speed]'
	@touch $@ $(RUNTIME_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/pvs-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	cd ansible && ../$(BIN)/ansible-lint --offline
	cd ansible && ../$(BIN)/ansible-playbook --syntax-check -i inventory.example.ini site.yml
	$(BIN)/python deploy/lab/check-unit-drift.py

format: $(STAMP)
	$(BIN)/ruff format bridge tests bench
	$(BIN)/ruff check --fix bridge tests bench

# The real components the tests use where users have them: an MQTT broker, a browser
# and promtool. Installed from Debian when root; without them those tests are skipped
# (and say so).
SYSDEPS := $(VENV)/.sysdeps-stamp
$(SYSDEPS): | $(BIN)/python
	@if [ "$$(id -u)" = 0 ] && ! { command -v mosquitto && command -v chromium && command -v promtool; } >/dev/null 2>&1; then \
	  echo "installing mosquitto, chromium and promtool (prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    mosquitto chromium prometheus fonts-dejavu-core >/dev/null; \
	  systemctl disable --now mosquitto prometheus >/dev/null 2>&1 || true; \
	fi
	@touch $@

unit: $(STAMP) $(SYSDEPS)
	$(BIN)/pytest -q -p no:cacheprovider

lab: $(STAMP)
	bash deploy/lab/run.sh

test: lint unit lab

bench: $(STAMP)
	$(BIN)/python bench/bench_hit.py
	$(BIN)/python bench/bench_freshness.py
	$(BIN)/python bench/bench_fanout.py
	$(BIN)/python bench/bench_attacks.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
