# Task 2, continued: what the SFT systems learned, on held-out prompts.


rule format_metrics:
    input:
        heldout="results/sft/heldout_answers.parquet",
        code=stage_code("format_metrics"),
    output:
        metrics="results/sft/format_metrics.json",
    log:
        "logs/format_metrics.log",
    benchmark:
        "benchmarks/format_metrics.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("format_metrics"),
    shell:
        stage_shell("format_metrics")


rule judge_generations:
    input:
        model_dir=model_dir(CFG.sft.judge.model),
        heldout="results/sft/heldout_answers.parquet",
        code=stage_code("judge_generations"),
    output:
        judgements="results/sft/judgements.parquet",
        judge="results/sft/judge.json",
    log:
        "logs/judge_generations.log",
    benchmark:
        "benchmarks/judge_generations.tsv"
    conda:
        "../environment.yml"
    threads: 8
    resources:
        gpu=CFG.eval.gpus_per_job,
        mem_mb=48000,
        runtime=60,
    params:
        preset=PRESET,
        config=config_of("judge_generations"),
    shell:
        stage_shell("judge_generations")
