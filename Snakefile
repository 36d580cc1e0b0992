# llmlab: IMDB sentiment with LLMs vs baselines, saiga SFT with QLoRA, one report.
#   snakemake --cores all                        full preset (GPU; see profiles/slurm)
#   snakemake --profile profiles/demo            offline CPU demo (what `make demo` runs)
# Every rule calls `python -m llmlab <stage>`; dvc.yaml holds the same stages
# (generated from these rules by `python -m llmlab.dvc_sync`).

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/analytics.smk"
include: "rules/sft_data.smk"
include: "rules/eval.smk"
include: "rules/train.smk"
include: "rules/sft_eval.smk"
include: "rules/report.smk"


# Downloads and model snapshots need the internet (login nodes have it, compute nodes often
# do not); the report and summaries are seconds of work, not worth a cluster job.
localrules:
    all,
    download_imdb,
    download_saiga,
    prepare_model,
    eval_llm_gather,
    eval_summary,
    format_metrics,
    report,


rule all:
    default_target: True
    input:
        "reports/report.md",
