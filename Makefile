# Two entry points: `make demo` and `make test`. Both create .venv from the locks if needed
# (requirements-dev.lock: the runtime lock requirements.lock plus the test and lint tools).
# Cluster: `make image` (the image of this commit), `make pipeline` (compiled Kubeflow pipelines),
# `make finetune-job` (the PyTorchJob for that image). k8s/README.md walks through a run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

# The image: <IMAGE_REPO>:<IMAGE_TAG>. IMAGE_REPO defaults to params.yaml's kubeflow.image_repository;
# IMAGE_TAG defaults to the commit's SHA, and then the working tree must be clean (the image is that commit).
IMAGE_REPO ?= $(or $(shell sed -n 's/^[[:space:]]*image_repository:[[:space:]]*\([^[:space:]\#]*\).*/\1/p' params.yaml 2>/dev/null | head -n 1),ghcr.io/medseg/medseg)
IMAGE_TAG ?=
GIT_SHA = $(shell git rev-parse HEAD)
# What the image is built from (.dockerignore's allowlist).
IMAGE_PATHS := pyproject.toml README.md requirements.lock medseg components pipelines .dvc/config dvc.yaml \
	dvc.lock data checkpoints registry profiles docker/finetune-job.sh
# Uncommitted changes: to tracked files, and new files that would enter the image. Compiled pipelines
# are left aside: they name the image, not the other way round.
GIT_CHANGES = git status --porcelain --untracked-files=no -- . ':(exclude)pipelines/compiled'; \
	git status --porcelain --untracked-files=all -- $(IMAGE_PATHS) ':(exclude)pipelines/compiled'
TAG = $(or $(IMAGE_TAG),$(GIT_SHA))

# $(call refuse_uncommitted,target): without IMAGE_TAG, stop when the tree differs from HEAD.
define refuse_uncommitted
	@if [ -z "$(IMAGE_TAG)" ] && [ -n "$$($(GIT_CHANGES))" ]; then \
		echo "make $(1): the working tree has changes that are not committed; commit them (the image is" \
		     "named for the commit) or name the image yourself: make $(1) IMAGE_TAG=..." >&2; \
		{ $(GIT_CHANGES); } >&2; exit 2; fi
endef
DOCKER ?= docker
KUBECTL ?= kubectl
JOB_NAME ?= medseg-finetune

.PHONY: venv demo test test-all lint pipeline image image-size finetune-job clean-outputs

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)  ## run the default pipeline (dvc repro) on the embedded synthetic sample
	dvc repro
	@echo ""
	@echo "Result table: results/report/report.md (synthetic phantom data; see README to use a real dataset)"

test: $(STAMP)  ## run the default (fast) test suite, on two processes (pytest-xdist; a module's tests share one)
	$(BIN)/python -m pytest -q -n 2 --dist loadscope

test-all: $(STAMP)  ## include slow tests
	$(BIN)/python -m pytest -q -n 2 --dist loadscope -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/hadolint docker/Dockerfile

# One tag for all (compiling the first changes a tracked file, which must not stop the others).
pipeline: $(STAMP)  ## compile the Kubeflow pipelines (demo, study, regression) for IMAGE_TAG (default: HEAD's SHA)
	$(call refuse_uncommitted,pipeline)
	$(BIN)/medseg compile_pipeline --name demo --out pipelines/compiled/demo.yaml --image-tag $(TAG)
	$(BIN)/medseg compile_pipeline --name study --out pipelines/compiled/study.yaml --image-tag $(TAG)
	$(BIN)/medseg compile_pipeline --name regression --out pipelines/compiled/regression.yaml --image-tag $(TAG)

image:  ## docker build <IMAGE_REPO>:<IMAGE_TAG or HEAD's SHA> from docker/Dockerfile
	$(call refuse_uncommitted,image)
	$(DOCKER) build -f docker/Dockerfile \
		--build-arg GIT_SHA=$(GIT_SHA)$(if $(shell $(GIT_CHANGES)),-dirty) \
		-t $(IMAGE_REPO):$(TAG) .
	@echo "Built $(IMAGE_REPO):$(TAG); push it with: $(DOCKER) push $(IMAGE_REPO):$(TAG)"

image-size: $(STAMP)  ## estimate the image's size from the runtime lock (docker/image_size.py)
	$(BIN)/python docker/image_size.py

finetune-job:  ## print the PyTorchJob of k8s/training for <IMAGE_REPO>:<TAG>, named JOB_NAME: | kubectl apply -f -
	@overlay=$$(mktemp -d .finetune-job.XXXXXX) && trap 'rm -rf "$$overlay"' EXIT && \
	printf '%s\n' \
		'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
		'resources: [../k8s/training]' \
		'images: [{name: ghcr.io/medseg/medseg, newName: "$(IMAGE_REPO)", newTag: "$(TAG)"}]' \
		'patches: [{target: {kind: PyTorchJob, name: medseg-finetune},' \
		'  patch: "[{\"op\": \"replace\", \"path\": \"/metadata/name\", \"value\": \"$(JOB_NAME)\"}]"}]' \
		> "$$overlay/kustomization.yaml" && \
	$(KUBECTL) kustomize --load-restrictor LoadRestrictionsNone "$$overlay"

clean-outputs:  ## remove pipeline outputs (DVC can restore them from its cache)
	rm -rf data/raw/sample data/processed models results
