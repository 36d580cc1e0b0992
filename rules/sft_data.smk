# saiga -> filtered single-turn dialogues -> renamed roles -> chat-formatted train/eval parts.


rule filter_saiga:
    input:
        input="data/raw/saiga.parquet",
        tokenizer=model_dir(CFG.sft.model),
        code=stage_code("filter_saiga"),
    output:
        kept="data/sft/{variant}/filtered.parquet",
        funnel="data/sft/{variant}/funnel.json",
        figure=report(
            "reports/figures/sft/funnel_{variant}.png",
            caption="../reports/captions/funnel.rst",
            category="3. SFT data",
            subcategory="{variant}",
        ),
    log:
        "logs/filter_saiga/{variant}.log",
    benchmark:
        "benchmarks/filter_saiga/{variant}.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("filter_saiga"),
    shell:
        stage_shell("filter_saiga")


rule rename_roles:
    input:
        input="data/sft/{variant}/filtered.parquet",
        code=stage_code("rename_roles"),
    output:
        out="data/sft/{variant}/renamed.parquet",
    log:
        "logs/rename_roles/{variant}.log",
    benchmark:
        "benchmarks/rename_roles/{variant}.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("rename_roles"),
    shell:
        stage_shell("rename_roles")


rule format_chat:
    input:
        input="data/sft/{variant}/renamed.parquet",
        tokenizer=model_dir(CFG.sft.model),
        code=stage_code("format_chat"),
    output:
        train="data/sft/{variant}/train.parquet",
        eval="data/sft/{variant}/eval.parquet",
    log:
        "logs/format_chat/{variant}.log",
    benchmark:
        "benchmarks/format_chat/{variant}.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("format_chat"),
    shell:
        stage_shell("format_chat")
