# The markdown report a reviewer reads instead of the notebooks.


rule report:
    input:
        imdb_stats="reports/tables/imdb_stats.json",
        imdb_figures="reports/figures/imdb",
        saiga_stats="reports/tables/saiga_stats.json",
        saiga_figures="reports/figures/saiga",
        funnels=expand("data/sft/{variant}/funnel.json", variant=CFG.sft.variants),
        funnel_figures=expand("reports/figures/sft/funnel_{variant}.png", variant=CFG.sft.variants),
        eval_summary="results/eval/summary.json",
        eval_table="reports/tables/eval.md",
        eval_figures="reports/figures/eval",
        train_logs=expand("results/sft/{variant}/train_log.json", variant=CFG.sft.variants),
        sft_metrics=expand("results/sft/{variant}/metrics.json", variant=CFG.sft.variants),
        loss_curves=expand("reports/figures/sft/loss_{variant}.png", variant=CFG.sft.variants),
        generations="results/sft/generations.parquet",
        generations_table="reports/tables/generations.md",
        loss_table="reports/tables/sft_loss.md",
        code=stage_code("report"),
    output:
        "reports/report.md",
    params:
        preset=PRESET,
        config=config_of("report"),
        # Durations of the other rules; read if present (Snakemake writes them, DVC does not).
        benchmarks="benchmarks",
    conda:
        "../environment.yml"
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    shell:
        "python -m llmlab report --preset {params.preset} "
        "--imdb-stats {input.imdb_stats} --imdb-figures {input.imdb_figures} "
        "--saiga-stats {input.saiga_stats} --saiga-figures {input.saiga_figures} "
        "--funnels {input.funnels} --funnel-figures {input.funnel_figures} "
        "--eval-summary {input.eval_summary} --eval-table {input.eval_table} "
        "--eval-figures {input.eval_figures} --train-logs {input.train_logs} "
        "--sft-metrics {input.sft_metrics} --loss-curves {input.loss_curves} "
        "--generations {input.generations} --generations-table {input.generations_table} "
        "--loss-table {input.loss_table} --benchmarks {params.benchmarks} --out {output} "
        "> {log} 2>&1"
