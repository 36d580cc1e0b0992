# Acquisition (local rules: the only ones that may touch the network) and the IMDB split.


rule download_imdb:
    input:
        code=stage_code("download_imdb"),
    output:
        out="data/raw/imdb.parquet",
        meta="data/raw/imdb.json",
    log:
        "logs/download_imdb.log",
    benchmark:
        "benchmarks/download_imdb.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("download_imdb"),
    shell:
        stage_shell("download_imdb")


rule download_saiga:
    input:
        code=stage_code("download_saiga"),
    output:
        out="data/raw/saiga.parquet",
        meta="data/raw/saiga.json",
    log:
        "logs/download_saiga.log",
    benchmark:
        "benchmarks/download_saiga.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("download_saiga"),
    shell:
        stage_shell("download_saiga")


rule prepare_model:
    input:
        code=stage_code("prepare_model"),
    output:
        out=directory("models/pretrained/{model}"),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("prepare_model"),
    shell:
        stage_shell("prepare_model")


rule split_imdb:
    input:
        input="data/raw/imdb.parquet",
        code=stage_code("split_imdb"),
    output:
        train="data/imdb/train.parquet",
        test="data/imdb/test.parquet",
        val="data/imdb/val.parquet",
        info="data/imdb/split.json",
    log:
        "logs/split_imdb.log",
    benchmark:
        "benchmarks/split_imdb.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("split_imdb"),
    shell:
        stage_shell("split_imdb")
