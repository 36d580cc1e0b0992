#!/usr/bin/env bash
# Run by `snakemake --sdm conda` once, right after it built an environment from environment.yml
# (the env file every rule's `conda:` directive names) under .snakemake/conda/<hash>: activated in
# that environment, from Snakemake's working directory. Not `llmlab-gpu`, which Snakemake does not
# use. The rules run `python -m llmlab`, so the environment needs the project itself (the env file
# only lists its dependencies).
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
