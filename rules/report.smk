# The markdown report a reviewer reads instead of the notebooks, and its tables as files.


rule report:
    input:
        imdb_stats="reports/tables/imdb_stats.json",
        imdb_figures="reports/figures/imdb",
        imdb_split="data/imdb/split.json",
        saiga_stats="reports/tables/saiga_stats.json",
        saiga_figures="reports/figures/saiga",
        funnels=expand("data/sft/{variant}/funnel.json", variant=CFG.sft.variants),
        funnel_figures=expand(
            "reports/figures/sft/funnel_{variant}.png", variant=CFG.sft.variants
        ),
        eval_summary="results/eval/summary.json",
        eval_figures="reports/figures/eval",
        rnn_figure="reports/figures/baselines/rnn_history.png",
        train_logs=expand(
            "results/sft/{variant}/train_log.json", variant=CFG.sft.variants
        ),
        sft_metrics=expand(
            "results/sft/{variant}/metrics.json", variant=CFG.sft.variants
        ),
        loss_curves=expand(
            "reports/figures/sft/loss_{variant}.png", variant=CFG.sft.variants
        ),
        generations="results/sft/generations.parquet",
        format_metrics="results/sft/format_metrics.json",
        judge="results/sft/judge.json",
        merges=expand("results/sft/{variant}/merge.json", variant=CFG.sft.variants),
        code=stage_code("report"),
    output:
        out="reports/report.md",
        # The report's tables as files too, rendered from the stages' data by the report.
        eval_table=report(
            "reports/tables/eval.md",
            caption="../reports/captions/eval_table.rst",
            category="2. Sentiment evaluation",
        ),
        generations_table=report(
            "reports/tables/generations.md",
            caption="../reports/captions/generations.rst",
            category="4. SFT",
        ),
        loss_table="reports/tables/sft_loss.md",
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("report"),
        # Durations of the other rules; read if present (Snakemake writes them, DVC does not).
        benchmarks="benchmarks",
    shell:
        stage_shell("report")
