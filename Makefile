# Two entry points: `make repro` (the pipeline on the embedded default) and `make test` (the full suite).
# Both create .venv if missing, install torch first (its CPU/GPU build is chosen by the pin) and then the
# project: every pin, Prefect's fastapi/SQLAlchemy bounds included, is in pyproject.toml, so `pip install -e .`
# alone gives a working stack. Offline/telemetry defaults are applied by the package itself on import
# (src/scalevlm/env.py), whichever way a stage starts; `SCALEVLM_ONLINE=1 make repro` allows hub downloads.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export PYTHONHASHSEED ?= 0
# dvc.yaml commands say `python`: it must be the venv's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro demo test test-fast lint bench study deps clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

# three minutes from data to answers: a small r1grid set, a short SCALe-SFT run, predictions (flows/demo.py)
demo: $(STAMP)
	$(BIN)/python -m flows.demo

# One pytest worker per core (pytest-xdist); each test file is one unit of work (the two that share the trained
# project are one), slow files first, so fixtures are built once and the long units overlap the short ones
# (tests/conftest.py).
XDIST := -n auto --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) --durations=15

# the fast tier (under a minute): no training, no pipeline runs, no Prefect server
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not prefect"

lint: $(STAMP)
	$(BIN)/ruff check .

# regenerate dvc.yaml's code deps from each stage's import closure (tools/stage_deps.py; a contract test checks them)
deps: $(STAMP)
	$(BIN)/python tools/stage_deps.py --write

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_curate.py

# The r1grid SFT study (5 seeds that vary data, base and training) and the SCALe tag sweep as queued DVC experiments
# (Prefect flow `scalevlm-sweep`), one experiment at a time on both cores: about 65 + 25 minutes on an idle machine.
# sweeps/ablation.yaml and sweeps/budget.yaml run the same way. Reports land in reports/study/<name>/.
# The first task's sweeps (sweeps/count_*.yaml) need profiles/count.yaml applied first.
study: $(STAMP)
	$(BIN)/python -m flows.sweep sweeps/study.yaml
	$(BIN)/python -m flows.sweep sweeps/leakage.yaml

clean-venv:
	rm -rf $(VENV)
