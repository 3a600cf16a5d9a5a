# Two entry points: `make repro` (the pipeline on the embedded default) and `make test` (the full suite).
# Both create .venv if missing, install torch first (its CPU/GPU build is chosen by the pin) and then the
# project with the run-time constraints. Offline/telemetry variables are exported here, not by the user.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export HF_EVALUATE_OFFLINE ?= 1
export DVC_NO_ANALYTICS ?= 1
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0
# dvc.yaml commands say `python`: it must be the venv's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test lint bench study clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_curate.py

# The multi-seed study and the SCALe ablation as queued DVC experiments (Prefect flow `scalevlm-sweep`);
# about 45 minutes on 2 cores with 2 queue workers. Reports land in reports/study/<name>/.
study: $(STAMP)
	$(BIN)/python -m flows.sweep sweeps/study.yaml
	$(BIN)/python -m flows.sweep sweeps/ablation.yaml
	$(BIN)/python -m flows.sweep sweeps/study_sum.yaml

clean-venv:
	rm -rf $(VENV)
