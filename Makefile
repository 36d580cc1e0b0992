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

.PHONY: demo test test-fast lint format doctor dvc-yaml clean-results help

help:
	@echo "make demo      - set up .venv if needed and run the demo preset end to end"
	@echo "make test      - set up .venv if needed and run the tests"
	@echo "make test-fast - the unit tests only: pytest -m 'not slow and not e2e'"
	@echo "make lint      - ruff check + format --check, snakefmt --check, snakemake --lint,"
	@echo "                 dvc.yaml in sync with the Snakefile (seconds; CI runs it first)"
	@echo "make format    - ruff check --fix, ruff format, snakefmt: fix what lint reports"
	@echo "make doctor    - preflight of a preset on this machine (PRESET=demo|full)"
	@echo "make dvc-yaml  - regenerate dvc.yaml from the Snakefile"

$(BIN)/.installed: requirements/cpu.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/cpu.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

demo: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" snakemake --profile profiles/demo --cores $(CORES)

test: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest $(PYTEST_ARGS)

test-fast: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

# Cheapest first: a lint failure fails in seconds. snakefmt runs with its defaults.
lint: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" ruff check src tests scripts
	PATH="$(abspath $(BIN)):$$PATH" ruff format --check src tests scripts
	PATH="$(abspath $(BIN)):$$PATH" snakefmt --check Snakefile rules
	PATH="$(abspath $(BIN)):$$PATH" snakemake --lint --cores 1
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab.dvc_sync --check

# Fixes first (ruff's advice: a fix can leave code to reformat); what cannot be fixed is
# printed, and `make lint` still fails on it.
format: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" ruff check --fix --exit-zero src tests scripts
	PATH="$(abspath $(BIN)):$$PATH" ruff format src tests scripts
	PATH="$(abspath $(BIN)):$$PATH" snakefmt Snakefile rules

doctor: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab doctor --preset $(PRESET)

dvc-yaml: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" python -m llmlab.dvc_sync
