# Task 1: zero- and few-shot LLM sentiment vs TF-IDF and RNN baselines, on the same rows.

LLM_RUNS = expand(
    "results/eval/{model}/{shots}shot/predictions.parquet",
    model=CFG.eval.models,
    shots=CFG.eval.shots,
)


rule eval_llm:
    input:
        train="data/imdb/train.parquet",
        val="data/imdb/val.parquet",
        model_dir=model_dir("{model}"),
        code=stage_code("eval_llm"),
    output:
        predictions="results/eval/{model}/{shots}shot/shards/{shard}.parquet",
        info="results/eval/{model}/{shots}shot/shards/{shard}.json",
    log:
        "logs/eval_llm/{model}/{shots}shot/{shard}.log",
    benchmark:
        "benchmarks/eval_llm/{model}/{shots}shot/{shard}.tsv"
    conda:
        "../environment.yml"
    threads: 8
    resources:
        # vLLM's tensor_parallel_size (else 1); SLURM requests that many per job.
        gpu=CFG.eval.gpus_per_job,
        mem_mb=32000,
        runtime=120,
    params:
        preset=PRESET,
        config=config_of("eval_llm"),
    shell:
        stage_shell("eval_llm")


rule eval_llm_gather:
    input:
        val="data/imdb/val.parquet",
        shard_predictions=shard_files(
            "results/eval/{{model}}/{{shots}}shot/shards/{shard}.parquet"
        ),
        shard_info=shard_files(
            "results/eval/{{model}}/{{shots}}shot/shards/{shard}.json"
        ),
        code=stage_code("eval_llm_gather"),
    output:
        predictions="results/eval/{model}/{shots}shot/predictions.parquet",
        metrics="results/eval/{model}/{shots}shot/metrics.json",
    log:
        "logs/eval_llm_gather/{model}/{shots}shot.log",
    benchmark:
        "benchmarks/eval_llm_gather/{model}/{shots}shot.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("eval_llm_gather"),
    shell:
        stage_shell("eval_llm_gather")


rule baseline_tfidf:
    input:
        train="data/imdb/train.parquet",
        val="data/imdb/val.parquet",
        code=stage_code("baseline_tfidf"),
    output:
        predictions="results/eval/tfidf/predictions.parquet",
        metrics="results/eval/tfidf/metrics.json",
        model_out="models/baselines/tfidf.joblib",
    log:
        "logs/baseline_tfidf.log",
    benchmark:
        "benchmarks/baseline_tfidf.tsv"
    conda:
        "../environment.yml"
    threads: 2
    params:
        preset=PRESET,
        config=config_of("baseline_tfidf"),
    shell:
        stage_shell("baseline_tfidf")


rule baseline_rnn:
    input:
        train="data/imdb/train.parquet",
        val="data/imdb/val.parquet",
        code=stage_code("baseline_rnn"),
    output:
        predictions="results/eval/rnn/predictions.parquet",
        metrics="results/eval/rnn/metrics.json",
        history="results/eval/rnn/history.json",
        figure=report(
            "reports/figures/baselines/rnn_history.png",
            caption="../reports/captions/rnn_history.rst",
            category="2. Sentiment evaluation",
        ),
        model_out=directory("models/baselines/rnn"),
    log:
        "logs/baseline_rnn.log",
    benchmark:
        "benchmarks/baseline_rnn.tsv"
    conda:
        "../environment.yml"
    threads: 8
    params:
        preset=PRESET,
        config=config_of("baseline_rnn"),
    shell:
        stage_shell("baseline_rnn")


rule eval_summary:
    input:
        predictions=[
            *LLM_RUNS,
            "results/eval/tfidf/predictions.parquet",
            "results/eval/rnn/predictions.parquet",
        ],
        val="data/imdb/val.parquet",
        code=stage_code("eval_summary"),
    output:
        summary="results/eval/summary.json",
        figures=report(
            directory("reports/figures/eval"),
            patterns=["{name}.png"],
            caption="../reports/captions/eval_figures.rst",
            category="2. Sentiment evaluation",
        ),
    log:
        "logs/eval_summary.log",
    benchmark:
        "benchmarks/eval_summary.tsv"
    conda:
        "../environment.yml"
    params:
        preset=PRESET,
        config=config_of("eval_summary"),
    shell:
        stage_shell("eval_summary")
