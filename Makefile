# pvs-bridge: `make demo` and `make test` work on a fresh clone; both set up .venv first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.dev-stamp
PYTHON ?= python3

.PHONY: demo test lint format unit lab bench chaos clean deploy undeploy

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
	cd ansible && ../$(BIN)/ansible-playbook --syntax-check -i inventory.example.ini undeploy.yml
	cd ansible && ../$(BIN)/ansible-playbook --syntax-check -i local.ini site.yml undeploy.yml
	bash -n install.sh
	$(BIN)/python deploy/lab/check-unit-drift.py

format: $(STAMP)
	$(BIN)/ruff format bridge tests bench
	$(BIN)/ruff check --fix bridge tests bench

# Provision a Pi from this machine (README: "Deploy to a Pi"): Ansible into .venv, then
# ansible/site.yml on the inventory. INVENTORY=path for another inventory, ARGS=... for
# ansible-playbook options (ARGS=--ask-vault-pass, ARGS="--check --diff").
DEPLOY_STAMP := $(VENV)/.deploy-stamp
INVENTORY ?= ansible/inventory.ini
ARGS ?=
$(DEPLOY_STAMP): ansible/controller-requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r ansible/controller-requirements.txt
	@touch $@

# A missing inventory: say what to do before Ansible starts (site.yml's own first play,
# tasks/inventory_guard.yml, also fails on one, but after its parser's warnings).
define check_inventory
	@test -s $(INVENTORY) || { echo "make $@: no inventory at $(INVENTORY). Copy the example and put your Pi's address in it:"; \
	  echo "  cp ansible/inventory.example.ini ansible/inventory.ini"; echo "(or INVENTORY=path/to/inventory)"; exit 2; }
endef

deploy: $(DEPLOY_STAMP)
	$(check_inventory)
	ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook -i $(INVENTORY) ansible/site.yml $(ARGS)

# Take the bridge off the Pi again and restore what it had before (ansible/undeploy.yml).
undeploy: $(DEPLOY_STAMP)
	$(check_inventory)
	ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook -i $(INVENTORY) ansible/undeploy.yml $(ARGS)

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
