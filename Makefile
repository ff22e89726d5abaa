# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when missing.
# `make test-fast`: ruff and the tests without the end-to-end and the slow ones (pytest -m "not e2e and not
# slow"), for development; `make test` (CI) runs every test.
# `make test` runs pytest on two workers, a test file per worker (pytest-xdist); the fast lane gained
# nothing from two workers and runs serially (docs/journal.md, "Tests").
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: run test test-fast install viz ui notebook clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,serve]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/kedro run --pipelines segad

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q $(PYTEST_WORKERS)

test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not e2e and not slow"

viz: $(STAMP)
	$(BIN)/kedro viz build

# The MLflow web UI over the project's tracking store (docs/operations.md, "Experiment tracking").
# The `ui` extra brings the server packages; the web page is in the full mlflow wheel, whose
# mlflow-tracing==3.18.0 requirement is not published, so that wheel goes in without dependencies
# (its Python code is the same as mlflow-skinny 3.18.0's).
MLFLOW_STORE ?= sqlite:///data/09_tracking/mlflow.db
UI_PORT ?= 5000
$(VENV)/.ui: pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ui]'
	$(BIN)/python -m pip install --quiet --no-deps 'mlflow==3.18.0'
	touch $@

ui: $(VENV)/.ui
	mkdir -p data/09_tracking
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/mlflow ui --backend-store-uri $(MLFLOW_STORE) --host 127.0.0.1 --port $(UI_PORT)

# Execute notebooks/query_features.ipynb headless against data/04_feature (run `make run` first);
# the executed copy goes to data/08_reporting/notebooks/.
$(VENV)/.analysis: pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,analysis]'
	touch $@

notebook: $(VENV)/.analysis
	$(BIN)/python -m segad.notebooks notebooks/query_features.ipynb --out data/08_reporting/notebooks

clean-data:
	find data -type f ! -name .gitkeep -delete
