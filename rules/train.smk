# Task 2: QLoRA SFT variants of the base model, compared on held-out loss and side by side.


rule train_lora:
    input:
        train="data/sft/{variant}/train.parquet",
        eval="data/sft/{variant}/eval.parquet",
        model_dir=model_dir(CFG.sft.model),
        code=stage_code("train_lora"),
    output:
        adapter=directory("models/adapters/{variant}"),
        train_log="results/sft/{variant}/train_log.json",
        metrics="results/sft/{variant}/metrics.json",
        curve=report(
            "reports/figures/sft/loss_{variant}.png",
            caption="../reports/captions/loss_curve.rst",
            category="4. SFT",
            subcategory="{variant}",
        ),
    log:
        "logs/train_lora/{variant}.log",
    benchmark:
        "benchmarks/train_lora/{variant}.tsv"
    conda:
        "../environment.yml"
    threads: 8
    resources:
        # DDP: one rank per GPU, all on one node (train_lora starts them under torchrun).
        gpu=lambda wc: CFG.sft.variants[wc.variant].distributed.num_processes,
        mem_mb=48000,
        runtime=240,
    params:
        preset=PRESET,
        config=config_of("train_lora"),
        # Outside the outputs on purpose: Snakemake and DVC delete outputs before a rerun,
        # and the checkpoints are what lets an interrupted run resume.
        checkpoints="checkpoints/{variant}",
    shell:
        stage_shell("train_lora")


rule compare_generations:
    input:
        model_dir=model_dir(CFG.sft.model),
        adapters=expand("models/adapters/{variant}", variant=CFG.sft.variants),
        train=expand("data/sft/{variant}/train.parquet", variant=CFG.sft.variants),
        eval=expand("data/sft/{variant}/eval.parquet", variant=CFG.sft.variants),
        code=stage_code("compare_generations"),
    output:
        generations="results/sft/generations.parquet",
        heldout="results/sft/heldout_answers.parquet",
    log:
        "logs/compare_generations.log",
    benchmark:
        "benchmarks/compare_generations.tsv"
    conda:
        "../environment.yml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=60,
    params:
        preset=PRESET,
        config=config_of("compare_generations"),
    shell:
        stage_shell("compare_generations")


rule merge_adapter:
    input:
        model_dir=model_dir(CFG.sft.model),
        adapter="models/adapters/{variant}",
        eval="data/sft/{variant}/eval.parquet",
        code=stage_code("merge_adapter"),
    output:
        # A plain Hugging Face folder (no peft needed): transformers, vLLM.
        merged=directory("models/merged/{variant}"),
        metrics="results/sft/{variant}/merge.json",
    log:
        "logs/merge_adapter/{variant}.log",
    benchmark:
        "benchmarks/merge_adapter/{variant}.tsv"
    conda:
        "../environment.yml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=60,
    params:
        preset=PRESET,
        config=config_of("merge_adapter"),
    shell:
        stage_shell("merge_adapter")
