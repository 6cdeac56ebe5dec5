# Two entry points: `make demo` and `make test`. Both create .venv from requirements.lock if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: venv demo test test-all lint pipeline clean-outputs

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## run the default pipeline (dvc repro) on the embedded synthetic sample
	dvc repro
	@echo ""
	@echo "Result table: results/report/report.md (synthetic phantom data; see README to use a real dataset)"

test: $(STAMP)  ## run the default (fast) test suite
	$(BIN)/python -m pytest -q

test-all: $(STAMP)  ## include slow tests
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/hadolint docker/Dockerfile

pipeline: $(STAMP)  ## compile the Kubeflow pipeline
	$(BIN)/medseg compile_pipeline --out pipelines/compiled/medseg_demo.yaml

clean-outputs:  ## remove pipeline outputs (DVC can restore them from its cache)
	rm -rf data/raw/sample data/processed models results
