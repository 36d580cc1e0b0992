# Acquisition (local rules: the only ones that may touch the network) and the IMDB split.


rule download_imdb:
    input:
        code=stage_code("download_imdb"),
    output:
        data="data/raw/imdb.parquet",
        meta="data/raw/imdb.json",
    params:
        preset=PRESET,
        config=config_of("download_imdb"),
    conda:
        "../environment.yml"
    log:
        "logs/download_imdb.log",
    benchmark:
        "benchmarks/download_imdb.tsv"
    shell:
        "python -m llmlab download-imdb --preset {params.preset} "
        "--out {output.data} --meta {output.meta} > {log} 2>&1"


rule download_saiga:
    input:
        code=stage_code("download_saiga"),
    output:
        data="data/raw/saiga.parquet",
        meta="data/raw/saiga.json",
    params:
        preset=PRESET,
        config=config_of("download_saiga"),
    conda:
        "../environment.yml"
    log:
        "logs/download_saiga.log",
    benchmark:
        "benchmarks/download_saiga.tsv"
    shell:
        "python -m llmlab download-saiga --preset {params.preset} "
        "--out {output.data} --meta {output.meta} > {log} 2>&1"


rule prepare_model:
    input:
        code=stage_code("prepare_model"),
    output:
        directory("models/pretrained/{model}"),
    params:
        preset=PRESET,
        config=config_of("prepare_model"),
    conda:
        "../environment.yml"
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    shell:
        "python -m llmlab prepare-model --preset {params.preset} "
        "--model {wildcards.model} --out {output} > {log} 2>&1"


rule split_imdb:
    input:
        data="data/raw/imdb.parquet",
        code=stage_code("split_imdb"),
    output:
        train="data/imdb/train.parquet",
        test="data/imdb/test.parquet",
        val="data/imdb/val.parquet",
    params:
        preset=PRESET,
        config=config_of("split_imdb"),
    conda:
        "../environment.yml"
    log:
        "logs/split_imdb.log",
    benchmark:
        "benchmarks/split_imdb.tsv"
    shell:
        "python -m llmlab split-imdb --preset {params.preset} --input {input.data} "
        "--train {output.train} --test {output.test} --val {output.val} > {log} 2>&1"
