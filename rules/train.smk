# Task 2: QLoRA SFT variants of the base model, compared on held-out loss and side by side.


rule train_lora:
    input:
        train="data/sft/{variant}/train.parquet",
        eval="data/sft/{variant}/eval.parquet",
        model=model_dir(CFG.sft.model),
        code=stage_code("train_lora"),
    output:
        adapter=directory("models/adapters/{variant}"),
        log_json="results/sft/{variant}/train_log.json",
        metrics="results/sft/{variant}/metrics.json",
        curve=report(
            "reports/figures/sft/loss_{variant}.png",
            caption="../reports/captions/loss_curve.rst",
            category="4. SFT",
            subcategory="{variant}",
        ),
    params:
        preset=PRESET,
        config=config_of("train_lora"),
        # Outside the outputs on purpose: Snakemake and DVC delete outputs before a rerun,
        # and the checkpoints are what lets an interrupted run resume.
        checkpoints="checkpoints/{variant}",
    conda:
        "../environment.yml"
    log:
        "logs/train_lora/{variant}.log",
    benchmark:
        "benchmarks/train_lora/{variant}.tsv"
    threads: 8
    resources:
        gpu=1,
        mem_mb=48000,
        runtime=240,
    shell:
        "python -m llmlab train-lora --preset {params.preset} --variant {wildcards.variant} "
        "--model-dir {input.model} --train {input.train} --eval {input.eval} "
        "--checkpoints {params.checkpoints} --adapter {output.adapter} "
        "--train-log {output.log_json} --metrics {output.metrics} --curve {output.curve} "
        "> {log} 2>&1"


rule compare_generations:
    input:
        model=model_dir(CFG.sft.model),
        adapters=expand("models/adapters/{variant}", variant=CFG.sft.variants),
        metrics=expand("results/sft/{variant}/metrics.json", variant=CFG.sft.variants),
        code=stage_code("compare_generations"),
    output:
        generations="results/sft/generations.parquet",
        table=report(
            "reports/tables/generations.md",
            caption="../reports/captions/generations.rst",
            category="4. SFT",
        ),
        loss_table="reports/tables/sft_loss.md",
    params:
        preset=PRESET,
        config=config_of("compare_generations"),
    conda:
        "../environment.yml"
    log:
        "logs/compare_generations.log",
    benchmark:
        "benchmarks/compare_generations.tsv"
    threads: 8
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=60,
    shell:
        "python -m llmlab compare-generations --preset {params.preset} "
        "--model-dir {input.model} --adapters {input.adapters} --metrics {input.metrics} "
        "--generations {output.generations} --table {output.table} "
        "--loss-table {output.loss_table} > {log} 2>&1"
