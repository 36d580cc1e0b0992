# Figures and statistics of both datasets for the report.


rule imdb_analytics:
    input:
        input="data/raw/imdb.parquet",
        code=stage_code("imdb_analytics"),
    output:
        figures=report(
            directory("reports/figures/imdb"),
            patterns=["{name}.png"],
            caption="../reports/captions/imdb_analytics.rst",
            category="1. IMDB",
        ),
        stats="reports/tables/imdb_stats.json",
    log:
        "logs/imdb_analytics.log",
    benchmark:
        "benchmarks/imdb_analytics.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("imdb_analytics"),
    shell:
        stage_shell("imdb_analytics")


rule saiga_analytics:
    input:
        input="data/raw/saiga.parquet",
        tokenizer=model_dir(CFG.analytics.tokenizer_model),
        code=stage_code("saiga_analytics"),
    output:
        figures=report(
            directory("reports/figures/saiga"),
            patterns=["{name}.png"],
            caption="../reports/captions/saiga_analytics.rst",
            category="3. SFT data",
        ),
        stats="reports/tables/saiga_stats.json",
    log:
        "logs/saiga_analytics.log",
    benchmark:
        "benchmarks/saiga_analytics.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("saiga_analytics"),
    shell:
        stage_shell("saiga_analytics")
