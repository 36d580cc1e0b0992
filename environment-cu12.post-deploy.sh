#!/usr/bin/env bash
# Snakemake's post-deploy script of environment-cu12.yml: `snakemake --sdm conda` runs it right
# after building an environment from that file under .snakemake/conda/<hash>, activated in it,
# from Snakemake's working directory. The rules' `conda:` directives name environment.yml, so it
# runs only if they are pointed at environment-cu12.yml instead; with the rules as they are, the
# CUDA 12 stack is an activated `llmlab-gpu` environment with llmlab installed by hand
# (environment-cu12.yml). The rules run `python -m llmlab`, so an environment built from the env
# file alone (its dependencies only) needs the project itself.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
