#!/usr/bin/env bash
# Run by Snakemake (`--sdm conda`) inside the environment it just built from the env file
# beside this script, in the workflow's directory: the rules run `python -m llmlab`, so the
# environment needs the project itself (the env file only lists its dependencies).
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
