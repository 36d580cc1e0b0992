"""params.yaml -> typed config, shared by Snakemake, DVC and every stage.

The file holds the real experiment (the `full` preset) at top level and, under `presets`, an
overlay per preset that is merged onto it. `preset` picks the overlay. Overlays merge key by
key, except that a source mapping (one with `hub`, `path`, `synthetic` or `gguf`) replaces the
base source whole: a demo `synthetic` source must not inherit the hub `revision`.

Keys that shape the DAG (model keys, evaluated models, shots, SFT variants) must be the same in
every preset, because DVC expands its stages from the top-level values alone.

Every stage calls `load_params` first; any problem raises `ConfigError` whose message is one
line starting with the key path, before the stage has done any work.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from llmlab.errors import UserError
from llmlab.sources import SOURCE_KEYS, UNION_TAGS, DataSource, ModelSource, StrictModel

PRESETS = ("full", "demo")
DEFAULT_PARAMS = Path("params.yaml")

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
# A key usable as a wildcard value, file name and report label.
Key = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class ConfigError(UserError, ValueError):
    """An invalid params file. The message is one line: `<key path>: <what is wrong>`."""


# --------------------------------------------------------------------------- data


class ImdbConfig(StrictModel):
    source: DataSource
    # The course split: Hugging Face datasets' train_test_split(test_size, seed) of the whole set.
    test_size: Probability = 0.2
    split_seed: Seed = 42
    # One fixed, stratified subsample of the test part that every system is scored on.
    val_size: PositiveInt = 2000
    val_seed: Seed = 42


class SaigaConfig(StrictModel):
    source: DataSource


class TokenizerConversion(StrictModel):
    """How prepare_model loads a SentencePiece-only tokenizer once and saves it as tokenizer.json.

    `class_name` is the transformers class to load it with (`AutoTokenizer`: the class the
    folder's tokenizer_config.json declares); `legacy` is the Llama tokenizers' flag for how
    text after a special token is split (False: the fixed behaviour).
    """

    class_name: Literal["LlamaTokenizerFast", "AutoTokenizer"] = "LlamaTokenizerFast"
    legacy: bool = False


class ModelConfig(StrictModel):
    source: ModelSource
    # How prompts are rendered: `chat` uses the tokenizer's chat template; `plain` is for base
    # models (no template, or one they were never trained on) and uses eval.plain_format.
    prompt_format: Literal["chat", "plain"] = "chat"
    # dtype of the saved weights when prepare_model converts (GGUF); hub snapshots keep theirs.
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    # Set for a model that ships only tokenizer.model: prepare_model converts it once, so every
    # stage and vLLM read the same tokenizer.json. null: the source's tokenizer as it is.
    tokenizer: TokenizerConversion | None = None
    # Extra variables of the model's chat template, the same in the vLLM and transformers
    # backends. Llama 3.x templates write today's date into every prompt unless
    # `date_string` is set, which would make results depend on the calendar.
    chat_template_kwargs: dict[str, str | int | float | bool] = {}


# --------------------------------------------------------------------------- analytics


class AnalyticsConfig(StrictModel):
    # Key of `models` whose tokenizer counts tokens in the statistics (the SFT base model).
    tokenizer_model: Key = "sft_lm"
    dpi: Annotated[int, Field(ge=50, le=600)] = 130


# --------------------------------------------------------------------------- SFT data
# Owned by the SFT-data stages (filter_saiga, rename_roles, format_chat).


class FilterStep(StrictModel):
    """One heuristic of filter_saiga; `enabled: false` skips it (the funnel still lists it)."""

    enabled: bool = True


class ValueSetStep(FilterStep):
    """Keep rows whose column value is in `keep` (null: any value) and not in `drop`."""

    keep: list[str] | None = None
    drop: list[str] = []

    @model_validator(mode="after")
    def _disjoint(self) -> ValueSetStep:
        if self.keep is not None and not self.keep:
            raise ValueError("keep is empty, which keeps nothing; use null to keep every value")
        if self.keep is not None and set(self.keep) & set(self.drop):
            raise ValueError(f"keep and drop share {sorted(set(self.keep) & set(self.drop))}")
        return self


class SingleTurnStep(FilterStep):
    """`turns == 1`; what to do with a leading system message (persona/roleplay prompt)."""

    # keep: train on it; strip: remove the message, keep the dialogue; drop_row: drop the row.
    system_message: Literal["keep", "strip", "drop_row"] = "keep"


class MinScoreStep(FilterStep):
    min: Annotated[int, Field(ge=1, le=10)] = 8


class RegexStep(FilterStep):
    """Drop rows where a message of one of `roles` matches one of `patterns` (Rust regex)."""

    patterns: list[Annotated[str, Field(min_length=1)]] = []
    roles: list[Literal["system", "user", "bot"]] = Field(default=["bot"], min_length=1)


class TokenLengthStep(FilterStep):
    """Bounds on the tokens of the whole formatted sample (project template, SFT tokenizer)."""

    min_tokens: PositiveInt = 16
    # Must not exceed the training max_length, or the sample gets truncated.
    max_tokens: PositiveInt = 2048

    @model_validator(mode="after")
    def _ordered(self) -> TokenLengthStep:
        if self.min_tokens >= self.max_tokens:
            raise ValueError(
                f"min_tokens ({self.min_tokens}) must be < max_tokens ({self.max_tokens})"
            )
        return self


class NearDuplicatesStep(FilterStep):
    """MinHash-LSH over word n-gram shingles of the first user message (see llmlab.sft_data)."""

    ngram: Annotated[int, Field(ge=1, le=32)] = 8
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # estimated Jaccard >= it: duplicate
    num_perm: Annotated[int, Field(ge=8, le=1024)] = 64
    bands: PositiveInt = 32  # LSH bands of num_perm / bands rows; more bands catch lower overlaps
    seed: Seed = 42

    @model_validator(mode="after")
    def _bands_divide(self) -> NearDuplicatesStep:
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        return self


class FilterConfig(StrictModel):
    """Heuristics of filter_saiga for one variant, applied in the order declared here.

    Every step can be switched off (`<step>.enabled: false`); then rows are sampled down to
    `target_size`, stratified by `stratify_by`. Steps are named after the column they read.
    """

    well_formed: FilterStep = FilterStep()  # user before the first bot reply, no empty turns
    language: ValueSetStep = ValueSetStep(keep=["Russian"])
    single_turn: SingleTurnStep = SingleTurnStep()
    opus_score: MinScoreStep = MinScoreStep()
    is_bad_by_regex: FilterStep = FilterStep()  # drop rows the author's phrase list flags
    sonnet_complexity: ValueSetStep = ValueSetStep()
    sonnet_topic: ValueSetStep = ValueSetStep(drop=["inappropriate"])
    source: ValueSetStep = ValueSetStep()
    extra_regex: RegexStep = RegexStep()
    token_length: TokenLengthStep = TokenLengthStep()
    exact_duplicates: FilterStep = FilterStep()  # same normalised first user message
    near_duplicates: NearDuplicatesStep = NearDuplicatesStep()
    # Sampling of what is left.
    target_size: PositiveInt = 2500
    min_rows: PositiveInt = 2000  # fewer rows left after the steps: the stage fails
    stratify_by: Literal["sonnet_topic", "sonnet_complexity", "language", "source"] | None = (
        "sonnet_topic"
    )
    sample_seed: Seed = 42

    @model_validator(mode="after")
    def _sizes(self) -> FilterConfig:
        if self.min_rows > self.target_size:
            raise ValueError(
                f"min_rows ({self.min_rows}) must be <= target_size ({self.target_size})"
            )
        return self

    def steps(self) -> list[tuple[str, FilterStep]]:
        """The heuristics in application order, as (name, settings)."""
        return [(name, value) for name, value in self if isinstance(value, FilterStep)]


class SftDataConfig(StrictModel):
    # Raw role -> training role; the result must use only system/user/assistant.
    role_map: dict[str, Literal["system", "user", "assistant"]] = {
        "system": "system",
        "user": "user",
        "bot": "assistant",
    }
    eval_fraction: Probability = 0.05  # share of the filtered dialogues held out for eval loss
    split_seed: Seed = 42

    @field_validator("role_map")
    @classmethod
    def _maps_user_and_assistant(cls, role_map: dict[str, str]) -> dict[str, str]:
        missing = {"user", "assistant"} - set(role_map.values())
        if missing:
            raise ValueError(f"no raw role is mapped to {sorted(missing)}")
        return role_map


# --------------------------------------------------------------------------- evaluation
# Owned by the evaluation stages (split_imdb, eval_llm, eval_summary).


PROMPT_FIELDS = ("review", "labels")  # placeholders a prompt template may use


def _check_template(text: str, where: str, required: tuple[str, ...] = ()) -> None:
    """A template must format with exactly the known placeholders (literal braces doubled)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as err:
        raise ValueError(
            f"{where}: not a valid template ({err}); write literal braces as {{{{ }}}}"
        ) from None
    unknown = sorted(names - set(PROMPT_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown placeholder(s) {unknown} (allowed: {list(PROMPT_FIELDS)})"
        )
    for name in required:
        if name not in names:
            raise ValueError(f"{where}: must contain {{{name}}}")


class PromptTemplate(StrictModel):
    """One prompt variant: an optional system message and the user turn.

    `{review}` is replaced by the cleaned, truncated review and `{labels}` by the labels
    ("negative or positive"). Few-shot examples repeat the user turn with an example review,
    each followed by an assistant turn holding its label.
    """

    system: str | None = None
    user: str

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTemplate:
        _check_template(self.user, "user", required=("review",))
        if self.system is not None:
            _check_template(self.system, "system")
        return self


class PlainFormat(StrictModel):
    """How turns are written as plain text for models with `prompt_format: plain` (base models).

    Each turn is its template with `{content}` replaced; turns are concatenated. The answer is
    generated right after the part of `assistant` before `{content}` (its trailing whitespace
    moves into the answer, so "Sentiment: {content}" scores " positive", as the model would
    write it).
    """

    system: str = "{content}\n\n"
    user: str = "{content}\n"
    assistant: str = "Sentiment: {content}\n\n"

    @field_validator("system", "user", "assistant")
    @classmethod
    def _has_content(cls, value: str) -> str:
        if value.count("{content}") != 1:
            raise ValueError("must contain {content} exactly once")
        return value


class FewshotConfig(StrictModel):
    """How the in-context examples are chosen (from the train split only)."""

    # `random`: k rows of the pool; `balanced`: equal labels (remainder drawn), order shuffled;
    # `similar`: per query, the k nearest pool reviews by TF-IDF cosine (no shared prefix).
    # `random` and `balanced` draw ONE set shared by all queries, so engines reuse the prefix.
    strategies: list[Literal["random", "balanced", "similar"]] = Field(
        default=["random", "balanced"], min_length=1
    )
    seed: Seed = 42
    # Token budget of each example review (head and tail kept), to bound the prompt length.
    example_tokens: PositiveInt = 200
    # Draws of each fixed example set (`random`, `balanced`): draw 0 uses `seed` (so 1 draw is
    # the single-set evaluation), draw d >= 1 a seed derived from (seed, d). Each draw is its
    # own shared prefix and its own systems (ids suffixed `/draw<d>`); `similar` and zero-shot
    # settings have one draw. The spread over draws shows the luck of the examples drawn.
    draws: PositiveInt = 1

    @field_validator("strategies")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("strategies must be unique")
        return value


class CalibrationConfig(StrictModel):
    """Calibration of label scores, each method one more system per prompt x strategy."""

    # `none`: argmax of the raw scores; `contextual`: divide out the label prior measured on
    # content-free inputs (Zhao et al., 2021); `threshold`: a decision threshold on the
    # positive-minus-negative score fitted on a held-out slice of train (two labels only).
    methods: list[Literal["none", "contextual", "threshold"]] = Field(
        default=["none", "contextual"], min_length=1
    )
    # Content-free reviews, passed through the same prompt and few-shot turns.
    content_free: list[str] = Field(default=["N/A", "", "[REVIEW]"], min_length=1)
    # Size of the stratified train slice the threshold is fitted on (excluded from the
    # few-shot pool, and disjoint from the evaluated rows by construction).
    threshold_rows: PositiveInt = 200
    seed: Seed = 42

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("methods must be unique")
        if "none" not in value:
            raise ValueError("methods must include none (the uncalibrated baseline of each system)")
        return value


class BootstrapConfig(StrictModel):
    """Percentile bootstrap of accuracy over reviews (95% CI); also used by the baselines."""

    resamples: Annotated[int, Field(ge=100)] = 2000
    seed: Seed = 42


class VllmConfig(StrictModel):
    """`vllm.LLM` engine arguments (see vllm.EngineArgs) and batching."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: PositiveInt = 4096
    # On GPU: fraction of GPU memory; on the CPU build: fraction of RAM reserved.
    gpu_memory_utilization: Probability = 0.85
    # Explicit KV-cache size in bytes (overrides gpu_memory_utilization; CPU runs share RAM).
    kv_cache_memory_bytes: PositiveInt | None = None
    max_num_seqs: PositiveInt = 256
    enable_prefix_caching: bool = True
    # dtype of the lm_head projection. bf16 logits are quantized (steps of 0.125 at typical
    # magnitudes), so label scores tie on ~10% of reviews; float32 costs little on GPU.
    head_dtype: Literal["model", "float32"] = "float32"
    # Eager mode skips torch.compile: minutes less start-up on CPU, somewhat slower steps.
    enforce_eager: bool = False
    seed: Seed = 0
    # Structured output the label is generated in: `choice` (the label itself) or `json`
    # ({"sentiment": "<label>"} under a JSON schema).
    output: Literal["choice", "json"] = "choice"
    batch_size: PositiveInt = 512  # prompts per engine call (progress is reported per call)
    # GPUs one engine spans (the rule requests this many): for a model too large for one GPU.
    # Scaling over many reviews is `eval.shards` (one job per GPU), which needs no
    # interconnect and survives a lost node.
    tensor_parallel_size: PositiveInt = 1


class TransformersConfig(StrictModel):
    """The transformers log-likelihood backend."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: PositiveInt = 8
    # dtype of the lm_head: float32 keeps bf16/fp16 models' label scores from tying (see vllm).
    head_dtype: Literal["model", "float32"] = "float32"
    # Reuse the KV cache of a prefix shared by every prompt in a batch (few-shot turns).
    reuse_prefix: bool = True


class EvalConfig(StrictModel):
    models: list[Key] = Field(min_length=1)
    shots: list[Annotated[int, Field(ge=0, le=32)]] = Field(default=[0, 5], min_length=1)
    labels: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z _-]*$")]] = Field(
        default=["negative", "positive"], min_length=2
    )
    backend: Literal["vllm", "transformers"] = "vllm"
    # Prompt variants by name (the `prompt` column); each is evaluated at every shot count.
    prompts: dict[Key, PromptTemplate] = Field(min_length=1)
    plain_format: PlainFormat = PlainFormat()
    # Reviews are cleaned (<br /> -> newline) and cut to this many tokens, head and tail kept.
    review_tokens: PositiveInt = 400
    review_head_fraction: Probability = 0.5
    fewshot: FewshotConfig = FewshotConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    vllm: VllmConfig = VllmConfig()
    transformers: TransformersConfig = TransformersConfig()
    # Jobs per (model, shots): each scores the validation reviews a hash of (shard_seed,
    # review_id) assigns it, and eval_llm_gather joins them. Predictions do not depend on it.
    shards: Annotated[int, Field(ge=1, le=4096)] = 1
    shard_seed: Seed = 0

    @property
    def gpus_per_job(self) -> int:
        """GPUs one eval_llm job uses: vLLM's tensor-parallel size, else one."""
        return self.vllm.tensor_parallel_size if self.backend == "vllm" else 1

    @model_validator(mode="after")
    def _consistent(self) -> EvalConfig:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("eval.labels: labels must be unique")
        if "threshold" in self.calibration.methods and len(self.labels) != 2:
            raise ValueError(
                "eval.calibration.methods: threshold needs exactly two labels "
                f"(eval.labels has {len(self.labels)})"
            )
        return self


# --------------------------------------------------------------------------- baselines
# Owned by baseline_tfidf and baseline_rnn.


class TfidfConfig(StrictModel):
    """baseline_tfidf: TfidfVectorizer + LogisticRegression (see llmlab.baselines.tfidf)."""

    ngram_max: Annotated[int, Field(ge=1, le=3)] = 2  # word n-grams 1..ngram_max
    # Terms in fewer than min_df training reviews, or in a larger share than max_df, are dropped.
    min_df: PositiveInt = 5
    max_df: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    max_features: PositiveInt | None = None  # keep only the most frequent terms; null = all
    sublinear_tf: bool = True  # 1 + log(tf): ten "great"s are not ten times the evidence
    C: Annotated[float, Field(gt=0)] = 8.0  # inverse L2 strength of the logistic regression
    solver: Literal["liblinear", "lbfgs", "saga"] = "liblinear"
    max_iter: PositiveInt = 1000


class RnnConfig(StrictModel):
    """baseline_rnn: bidirectional GRU/LSTM classifier (see llmlab.baselines.rnn)."""

    seed: Seed = 42  # held-out slice, initial weights, dropout, batch order
    cell: Literal["gru", "lstm"] = "gru"
    max_len: PositiveInt = 400  # tokens kept per review
    # Share of max_len taken from the start of a longer review, the rest from its end.
    head_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    vocab_size: Annotated[int, Field(ge=3)] = 40_000  # including <pad> and <unk>
    min_freq: PositiveInt = 2  # rarer training tokens become <unk>
    embedding_dim: PositiveInt = 128
    hidden_size: PositiveInt = 64  # per direction
    num_layers: Annotated[int, Field(ge=1, le=4)] = 1
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.3
    batch_size: PositiveInt = 64
    epochs: PositiveInt = 3  # upper bound; early stopping may end sooner
    patience: PositiveInt = 1  # epochs without a lower held-out loss before stopping
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-3  # Adam
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    heldout_fraction: Annotated[float, Field(gt=0.0, le=0.5)] = 0.1  # of train, early stopping


class BaselinesConfig(StrictModel):
    tfidf: TfidfConfig = TfidfConfig()
    rnn: RnnConfig = RnnConfig()


# --------------------------------------------------------------------------- SFT training
# Owned by train_lora and compare_generations.


# vLLM's max_lora_rank choices end here (MaxLoRARanks in vllm/config/lora.py, 0.32.0 and 0.33.0).
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
VLLM_MAX_LORA_RANK = VLLM_MAX_LORA_RANKS[-1]
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraSettings(StrictModel):
    """peft `LoraConfig` of one variant (task CAUSAL_LM, no bias)."""

    r: PositiveInt = 16
    alpha: PositiveInt = 16
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # Module names inside the decoder layers; the default is every attention and MLP projection.
    target_modules: list[Annotated[str, Field(min_length=1)]] = Field(
        default=list(LORA_TARGET_MODULES), min_length=1
    )


class TrainingSettings(StrictModel):
    """TRL `SFTConfig` values of one variant; the keys are TRL's own argument names.

    `optim` and `precision` are what a GPU run uses: llmlab.train falls back on a CPU
    (bitsandbytes 8-bit/paged optimizers -> adamw_torch, auto precision -> fp32).
    """

    per_device_train_batch_size: PositiveInt = 2
    gradient_accumulation_steps: PositiveInt = 4
    max_steps: PositiveInt = 100
    warmup_steps: Annotated[int, Field(ge=0)] = 5
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    lr_scheduler_type: Literal["linear", "cosine", "constant_with_warmup"] = "linear"
    optim: Literal["adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_torch"] = (
        "adamw_8bit"
    )
    # auto: bf16 on a GPU that has it, else fp16; fp32 on a CPU (bf16 is slower there).
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: Seed = 3407
    max_length: PositiveInt = 2048  # tokens per dialogue; longer ones are truncated
    gradient_checkpointing: bool = True
    logging_steps: PositiveInt = 1
    save_steps: PositiveInt = 25  # checkpoint interval (an interrupted run resumes from it)
    save_total_limit: PositiveInt = 2
    eval_steps: PositiveInt | None = 25  # held-out loss during training; null: only at the end
    per_device_eval_batch_size: PositiveInt = 4
    # Pack whole dialogues into rows of max_length tokens (TRL's best-fit-decreasing packing,
    # padding-free batches): no padding, the same loss tokens, no attention across dialogues.
    # per_device_train_batch_size then counts packed rows, not dialogues.
    packing: bool = False

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> TrainingSettings:
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than max_steps "
                f"({self.max_steps})"
            )
        return self


class DistributedSettings(StrictModel):
    """Data-parallel (DDP) training on one node: train_lora starts `num_processes` ranks under
    torchrun, one GPU each; the effective batch is per_device x grad_accum x num_processes."""

    num_processes: Annotated[int, Field(ge=1, le=64)] = 1


class SftVariant(StrictModel):
    filter: FilterConfig = FilterConfig()
    # QLoRA: load the base model 4-bit NF4 (bitsandbytes); false trains LoRA on the
    # full-precision model.
    quantize: bool = True
    lora: LoraSettings = LoraSettings()
    training: TrainingSettings = TrainingSettings()
    distributed: DistributedSettings = DistributedSettings()


class GenerationConfig(StrictModel):
    """compare_generations: prompts and decoding settings (the same for every system)."""

    prompts: list[Annotated[str, Field(min_length=1)]] = Field(
        default=["Расскажи коротко, что такое лог регрессия?"], min_length=1
    )
    # true: the base computes 4-bit NF4 (bitsandbytes; transformers backend only). false: for
    # QLoRA variants the same NF4 weights, dequantized once to the run's dtype (what vLLM
    # serves: it has no bitsandbytes), else the folder's weights. Either way the adapters run
    # on the weights they were trained on (README, "Generation design": measured).
    quantize: bool = True
    do_sample: bool = True
    temperature: Annotated[float, Field(gt=0.0, le=5.0)] = 0.7
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    repetition_penalty: Annotated[float, Field(ge=1.0, le=3.0)] = 1.1
    max_new_tokens: PositiveInt = 256
    batch_size: PositiveInt = 8
    seed: Seed = 42
    # vllm: one engine serves the base and every adapter (LoRARequest), all prompts batched;
    # its engine settings are eval.vllm's. transformers: peft adapters switched on one model.
    backend: Literal["vllm", "transformers"] = "transformers"

    @model_validator(mode="after")
    def _engine_supports(self) -> GenerationConfig:
        # vLLM 0.32 / 0.33 (the pinned engines) dropped bitsandbytes from QuantizationMethods:
        # the engine would refuse it at start, after hours of evaluation and training.
        if self.backend == "vllm" and self.quantize:
            raise ValueError(
                "quantize is true but backend is vllm, and the pinned vLLM (0.32, 0.33) has no "
                "bitsandbytes 4-bit quantization; set quantize: false (vLLM serves the 4-bit "
                "base dequantized: the same weights) or backend: transformers"
            )
        return self


class HeldoutConfig(StrictModel):
    """compare_generations' held-out prompts: first user turns of eval dialogues no variant
    trained on, answered by every system with `sft.generation`'s decoding settings."""

    count: PositiveInt = 200
    seed: Seed = 42  # which prompts, when more are held out than `count`
    bootstrap: BootstrapConfig = BootstrapConfig()  # CIs of the format metrics and win rates


class JudgeSanityConfig(StrictModel):
    """The check a judge must pass before any of its win rates is read: on every held-out
    prompt it compares the reference answer with a corrupted copy of it, in both orders (extra
    requests of judge_generations, same backend)."""

    # shuffled_words: the reference's words in a seeded random order (same words, length and
    # language: only reading tells them apart); truncated: its first half; other_reference:
    # another held-out prompt's reference (fluent but off-topic).
    corruption: Literal["shuffled_words", "truncated", "other_reference"] = "shuffled_words"
    # "Most prompts", read statistically: the judge passes when the Wilson 95% lower bound of
    # the share of prompts on which it prefers the reference in BOTH orders is above this (at
    # 10 prompts that takes 9; a judge without preference does it on 1/9 of prompts).
    min_pass_share: Probability = 0.5
    seed: Seed = 42  # the shuffles and the choice of the other reference


class JudgeConfig(StrictModel):
    """judge_generations: a model compares the systems' held-out answers pairwise, in both
    orders, with the verdict constrained to A / B / tie (eval.backend and its engine
    settings). No win rate is reported for a pair the judge is not trusted on: a judge that
    shares weights with the judged models (self-judging), fails the sanity check, gives one
    verdict on more than `max_verdict_share` of the pair's requests or is position-inconsistent
    (llmlab.sft_eval.judge_summary)."""

    model: Key = "judge_lm"  # a key of `models`
    # Below this share of prompts whose two verdicts agree once the order swap is undone,
    # the report calls the judge too weak to trust (a coin would agree on ~1/3).
    min_consistency: Probability = 0.6
    # Every pair is shown in both orders, so a judge without position bias says A and B equally
    # often whatever the systems' quality (each at most half of its verdicts). One verdict on
    # more than this share of a pair's requests is position bias (A or B) or a judge that
    # cannot tell the answers apart (tie): an always-tie judge is "consistent" but says nothing.
    max_verdict_share: Probability = 0.8
    sanity: JudgeSanityConfig = JudgeSanityConfig()
    max_answer_chars: PositiveInt = 2000  # longer answers are cut (the judge's context)


class MergeConfig(StrictModel):
    """merge_adapter: each variant's adapter merged into the full-precision base model,
    exported to models/merged/<variant> (loads without peft) and checked (llmlab.merge)."""

    # Weights of the export. auto: bfloat16 on a GPU with native bf16, else float16; float32
    # on a CPU (as llmlab.runtime.resolve_precision). float16 needs a GPU.
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # The base weights the delta is added to. trained: those the adapter was trained with (for
    # a QLoRA variant the 4-bit NF4 base, dequantized: the export computes what was trained
    # and compared); original: the model folder's own weights (for a QLoRA variant, another
    # model than the trained one by the base's quantization error).
    base: Literal["trained", "original"] = "trained"
    # The check compares logits on the first `check_dialogues` held-out dialogues of the
    # variant (eval.parquet), each cut to its first `check_tokens` tokens.
    check_dialogues: Annotated[int, Field(ge=1, le=64)] = 4
    check_tokens: Annotated[int, Field(ge=2, le=4096)] = 256


class SftConfig(StrictModel):
    model: Key = "sft_lm"
    variants: dict[Key, SftVariant] = Field(min_length=1)
    generation: GenerationConfig = GenerationConfig()
    heldout: HeldoutConfig = HeldoutConfig()
    judge: JudgeConfig = JudgeConfig()
    merge: MergeConfig = MergeConfig()

    @field_validator("variants")
    @classmethod
    def _no_base_variant(cls, variants: dict[str, SftVariant]) -> dict[str, SftVariant]:
        # compare_generations labels the model without an adapter "base".
        if "base" in variants:
            raise ValueError("`base` names the model without an adapter; rename the variant")
        return variants


# --------------------------------------------------------------------------- report


class ReportConfig(StrictModel):
    title: str = "llmlab: LLM sentiment evaluation and instruction SFT"


# --------------------------------------------------------------------------- top level


class Config(StrictModel):
    preset: Literal["full", "demo"] = "full"
    # Device of every stage that runs a model (eval_llm, train_lora, compare_generations).
    # `cuda` fails at start without a usable GPU (llmlab.runtime): never a quiet CPU fallback.
    device: Literal["cuda", "cpu"] = "cuda"
    imdb: ImdbConfig
    saiga: SaigaConfig
    models: dict[Key, ModelConfig] = Field(min_length=1)
    analytics: AnalyticsConfig = AnalyticsConfig()
    sft_data: SftDataConfig = SftDataConfig()
    eval: EvalConfig
    baselines: BaselinesConfig = BaselinesConfig()
    sft: SftConfig
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _model_keys_exist(self) -> Config:
        refs = {
            "analytics.tokenizer_model": [self.analytics.tokenizer_model],
            "sft.model": [self.sft.model],
            "sft.judge.model": [self.sft.judge.model],
        }
        refs["eval.models"] = self.eval.models
        for where, keys in refs.items():
            for key in keys:
                problem = key_problem(key, self.models, "models")
                if problem:
                    raise ValueError(f"{where}: {problem}")
        # vLLM's largest max_lora_rank (llmlab.generate.lora_rank_bound): refused at load, not
        # when compare_generations starts after the training.
        if self.sft.generation.backend == "vllm":
            for name, variant in self.sft.variants.items():
                if variant.lora.r > VLLM_MAX_LORA_RANK:
                    raise ValueError(
                        f"sft.variants.{name}.lora.r: {variant.lora.r} is above vLLM's largest "
                        f"max_lora_rank ({VLLM_MAX_LORA_RANK}) and sft.generation.backend is "
                        "vllm; lower r or set sft.generation.backend: transformers"
                    )
        return self

    def model_dir(self, key: str) -> Path:
        return Path("models/pretrained") / key


# --------------------------------------------------------------------------- key checks


def key_problem(key: object, allowed: Collection[Any], where: str) -> str | None:
    """Why `key` is not one of `allowed` (a config mapping's keys or a list's items at key path
    `where`), or None when it is: `'x' is not a key of sft.variants (a, b)`."""
    if key in allowed:
        return None
    relation = "a key of" if isinstance(allowed, Mapping) else "in"
    return f"{key!r} is not {relation} {where} ({', '.join(str(k) for k in allowed)})"


def check_key(key: object, allowed: Collection[Any], *, flag: str, where: str) -> None:
    """Raise UserError `<flag> <key_problem>` unless `key` is one of `allowed`.

    The check of a stage's wildcard values (`--variant`, `--model`, `--shots`) and of other
    names that must be config keys; `flag` says where the value came from.
    """
    problem = key_problem(key, allowed, where)
    if problem:
        raise UserError(f"{flag} {problem}")


# Paths (as tuples) whose mapping keys / values shape the DAG and so may not differ by preset.
DAG_KEYS: tuple[tuple[str, ...], ...] = (
    ("models",),
    ("eval", "models"),
    ("eval", "shots"),
    ("eval", "shards"),  # DVC's matrix writes the shard indices out (llmlab.dvc_sync)
    ("sft", "model"),
    ("sft", "variants"),
    ("sft", "judge", "model"),
)


# --------------------------------------------------------------------------- loading


def deep_merge(base: Any, overlay: Any) -> Any:
    """Merge `overlay` onto `base`: mappings key by key, anything else (and sources) replaced."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        if SOURCE_KEYS & overlay.keys():
            return copy.deepcopy(dict(overlay))
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if str(p) not in UNION_TAGS]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "<top level>"


def _first_line(msg: str) -> str:
    return " ".join(msg.split())


def _format_validation_error(err: ValidationError, prefix: str, overlay: Mapping | None) -> str:
    problems = []
    for e in err.errors(include_url=False):
        loc = e["loc"]
        where = _format_loc(loc)
        # Name the overlay key when the bad value came from the preset overlay.
        if overlay is not None and _get_path(overlay, [str(p) for p in loc]) is not _MISSING:
            where = f"{prefix}.{where}"
        msg = _first_line(e["msg"].removeprefix("Value error, "))
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] != "missing" and "input" in e and not isinstance(e["input"], Mapping | list):
            shown = repr(e["input"])
            if len(shown) <= 60:
                msg += f" (got {shown})"
        # Cross-field checks (model validators) put their own key path in the message.
        problems.append(msg if not loc else f"{where}: {msg}")
    head, rest = problems[0], problems[1:]
    return head + (f" (and {len(rest)} more: {'; '.join(rest)})" if rest else "")


_MISSING = object()


def _get_path(tree: Any, path: list[str]) -> Any:
    node = tree
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _check_dag_keys(raw: Mapping, overlay: Mapping, preset: str) -> None:
    for path in DAG_KEYS:
        base_value = _get_path(raw, list(path))
        over_value = _get_path(overlay, list(path))
        if over_value is _MISSING or base_value is _MISSING:
            continue
        dotted = ".".join(path)
        if isinstance(base_value, Mapping):
            if not isinstance(over_value, Mapping) or not set(over_value) <= set(base_value):
                extra = (
                    sorted(set(over_value) - set(base_value))
                    if isinstance(over_value, Mapping)
                    else over_value
                )
                raise ConfigError(
                    f"presets.{preset}.{dotted}: keys {extra} are not in {dotted}; a preset may "
                    "change values but not which models/variants exist (the DAG must be the same "
                    "for Snakemake and DVC)"
                )
        elif over_value != base_value:
            raise ConfigError(
                f"presets.{preset}.{dotted}: a preset may not change {dotted} (it shapes the DAG, "
                "which must be the same in every preset for DVC); change it at the top level"
            )


def _resolve_one(raw: Mapping[str, Any], presets: Mapping[str, Any], preset: str) -> Config:
    overlay = presets.get(preset) or {}
    if not isinstance(overlay, Mapping):
        raise ConfigError(f"presets.{preset}: must be a mapping")
    if "preset" in overlay:
        raise ConfigError(f"presets.{preset}.preset: an overlay cannot select a preset")
    _check_dag_keys(raw, overlay, preset)
    merged = deep_merge(raw, overlay)
    merged["preset"] = preset
    try:
        return Config.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, f"presets.{preset}", overlay)) from None


def resolve(raw: Mapping[str, Any], preset: str | None = None) -> Config:
    """Validate a parsed params mapping and return the config of the selected preset.

    Every preset is validated, not only the selected one: a broken value in the full
    experiment should not hide behind a demo run.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("<top level>: params must be a mapping")
    raw = dict(raw)
    presets = raw.pop("presets", {}) or {}
    if not isinstance(presets, Mapping):
        raise ConfigError("presets: must be a mapping of preset name to overlay")
    for name in presets:
        if name not in PRESETS:
            raise ConfigError(
                f"presets.{name}: unknown preset (expected one of {', '.join(PRESETS)})"
            )
    for where, value in (("preset", raw.get("preset", "full")), ("--preset", preset)):
        if value is not None and value not in PRESETS:
            raise ConfigError(
                f"{where}: unknown preset {value!r} (expected one of {', '.join(PRESETS)})"
            )
    chosen = preset or raw.get("preset", "full")
    configs = {chosen: _resolve_one(raw, presets, chosen)}
    for other in PRESETS:
        if other != chosen:
            configs[other] = _resolve_one(raw, presets, other)
    return configs[chosen]


def read_params_file(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({_first_line(str(err))})") from None
    if raw is None:
        raise ConfigError(f"{path}: params file is empty")
    return raw


def load_params(path: str | Path = DEFAULT_PARAMS, preset: str | None = None) -> Config:
    """Read and validate params.yaml; `preset` (if given) overrides the file's `preset` key."""
    return resolve(read_params_file(path), preset)
