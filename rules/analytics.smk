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
    params:
        preset=PRESET,
        config=config_of("imdb_analytics"),
    conda:
        "../environment.yml"
    log:
        "logs/imdb_analytics.log",
    benchmark:
        "benchmarks/imdb_analytics.tsv"
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
    params:
        preset=PRESET,
        config=config_of("saiga_analytics"),
    conda:
        "../environment.yml"
    log:
        "logs/saiga_analytics.log",
    benchmark:
        "benchmarks/saiga_analytics.tsv"
    shell:
        stage_shell("saiga_analytics")
