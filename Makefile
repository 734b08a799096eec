# The two commands a fresh machine needs: `make demo` and `make test` (each sets itself up).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# The real files for the real-data tests and the data configs: ../shared/datasets (a shared
# copy beside the checkout) when it exists, else ./data; `make test WIDEDEEP_DATA_DIR=...` or
# the variable in the environment wins. pytest's summary counts the tests skipped without them.
SHARED_DATA := $(abspath $(CURDIR)/../shared/datasets)
export WIDEDEEP_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(CURDIR)/data)

# Bytecode on, whatever the environment says: the suite's imports and pytest's rewritten test
# modules are then compiled once into the git-ignored __pycache__/, not on every run.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install demo test test-fast test-reliability lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,bench,mlflow]'
	# Hydra's Optuna sweeper (experiment=optuna_sweep) without its stale optuna<3 pin: its
	# code runs on the current Optuna (tests/test_tuning.py runs it), the pin predates it.
	$(BIN)/pip install --quiet --no-deps 'hydra-optuna-sweeper==1.3.0'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/widedeep-train -m experiment=demo model=wide,deep,wide_deep \
		hydra.sweep.dir=outputs/demo trainer.progress_bar=false
	$(BIN)/python -m widedeep.cli.summary outputs/demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Two workers (pytest-xdist): the unit tests are CPU-bound and independent; on 2 cores this
# halves the wall time.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" -n 2

test-reliability: install
	$(BIN)/python -m pytest -q -m reliability

# Benchmarks are their own command, never part of the test suite.
bench: install
	$(BIN)/widedeep-bench

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs multirun build *.egg-info
