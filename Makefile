# Two commands do everything on a fresh machine:
#   make demo   create .venv if missing, then run the whole DAG on the demo preset (offline, CPU)
#   make test   create .venv if missing, then run the test suite (unit tests + the demo end to end)
# The CPU stack is installed from requirements/cpu.lock without dependency resolution, so a
# fresh install months from now is the same stack. The GPU stack is environment.yml.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
PYTEST_ARGS ?=
PRESET ?= demo

.PHONY: demo test lint doctor dvc-yaml clean-results help

help:
	@echo "make demo   - set up .venv if needed and run the demo preset end to end"
	@echo "make test   - set up .venv if needed and run the tests"
	@echo "make lint   - ruff, snakemake --lint, dvc.yaml in sync with the Snakefile"
	@echo "make doctor - preflight of a preset on this machine (PRESET=demo|full)"

$(BIN)/.installed: requirements/cpu.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/cpu.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

demo: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" snakemake --profile profiles/demo --cores $(CORES)

test: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" ruff check src tests scripts
	PATH="$(abspath $(BIN)):$$PATH" snakemake --lint --cores 1
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab.dvc_sync --check

doctor: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab doctor --preset $(PRESET)

dvc-yaml: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab.dvc_sync
