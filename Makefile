# hdpbench: `make book` builds the book on the embedded demo data; `make test` runs the tests.
# Both install what they need into .venv on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyTorch 2.13.0 CPU wheel provided on this kind of machine; elsewhere pip resolves torch itself.
TORCH_VERSION := 2.13.0
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-$(TORCH_VERSION)*.whl))

DATASET ?= demo
MODELS ?=
DEVICE ?= cpu
# extra notebook parameters for `make book`, e.g. BOOK_PARAMS="md_steps=2000 n_frames=None"
BOOK_PARAMS ?=
# execute only these pages for `make book` (the others keep their last version), e.g. PAGES="phonons sigma"
PAGES ?=
PYTEST_ARGS ?=

.PHONY: help install test test-faults lint book data demo-data demo-model clean distclean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
ifneq ($(TORCH_WHEEL),)
	$(BIN)/pip install --quiet "$(TORCH_WHEEL)"
endif
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its test tools (torch first)

test: $(STAMP) ## run the test suite (set HDPBENCH_FIXTURES to run the real-data tests)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-faults: $(STAMP) ## the fault-injection tests alone: kills during MD writes, hostile archives, full disks, bad values
	$(BIN)/python -m pytest tests/test_faults.py tests/test_bad_input.py --durations=5 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff over the package, tests and benchmarks
	$(BIN)/ruff check src tests benchmarks

book: $(STAMP) ## execute the notebooks with papermill and build the HTML book into _build/html
	$(BIN)/python -m hdpbench.book --dataset "$(DATASET)" --models "$(MODELS)" --device "$(DEVICE)" --pages "$(PAGES)" $(foreach p,$(BOOK_PARAMS),--param $(p))

data: $(STAMP) ## fetch the authors' dataset into data/hdp (or say where to put it)
	$(BIN)/hdpbench data fetch --dataset hdp

demo-data: $(STAMP) ## regenerate the GFN1-xTB demo dataset in data/demo (hours on 2 cores; resumable)
	$(BIN)/pip install --quiet -e ".[xtb]"
	$(BIN)/python -m hdpbench.demo.generate
	$(BIN)/python -m hdpbench.demo.summary

demo-model: $(STAMP) ## retrain the demo MACE models and kcl-small (mace_run_train), then their phonon fine-tuned versions (≤ 1 h each on 2 cores)
	$(BIN)/python -m hdpbench.demo.train --models demo-small-data demo-more-data kcl-small
	$(BIN)/python -m hdpbench.demo.pft

clean: ## remove the built book, caches and generated notebooks (keeps results/ and .venv)
	rm -rf _build book/_generated .cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove .venv and the results store
	rm -rf $(VENV) results
