"""compare_generations: the base model and every LoRA adapter answer the same prompts.

- transformers backend: the base model is loaded once (4-bit NF4 when
  `sft.generation.quantize`, the weights the QLoRA adapters were trained against) and the
  adapters are attached to it with peft (`PeftModel.from_pretrained` + `load_adapter`); each
  system is selected with `set_adapter`, the base model with the `disable_adapter()` context.
- vllm backend (the full preset): one engine serves the base and each adapter through a
  `LoRARequest`. The pinned vLLM has no bitsandbytes 4-bit, so for QLoRA adapters the 4-bit
  base is dequantized once into a temporary folder (`served_base`): the weights the adapters
  were trained on, in a dtype vLLM serves. README "Generation design" has the measurement
  (held-out loss and greedy agreement on the 4-bit, dequantized and original bases).
- Every system, the base model included, gets the same input tokens: the prompt as a user
  turn rendered with the project's chat template and its generation prompt. The base model
  (a pretrained-only model in the full preset) never saw this format, which is the point of
  the comparison: all differences between the columns come from the adapters' weights.
- Decoding settings come from `sft.generation`; the seed is reset before each system, so
  every system draws from the same random stream and a rerun gives the same texts (CPU).
  Generation stops at the tokenizer's eos (which the adapters learned to emit after
  `<|eot_id|>`) or at the `<|eot_id|>` text itself (what a base model may produce instead).
- Output: one parquet row per (prompt, system); the report renders it side by side.
- Held-out prompts: besides the answers, each system's loss on the reference answer
  (`reference_nll`, `reference_tokens`): the tokens and loss train_lora scores, through
  transformers forward passes on the same base (with the vllm backend too, before the engine
  starts), so every system is compared on one common set no variant trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from llmlab.config import (
    VLLM_MAX_LORA_RANK,
    VLLM_MAX_LORA_RANKS,
    Config,
    GenerationConfig,
    check_key,
)
from llmlab.errors import UserError
from llmlab.gpus import bind_gpus
from llmlab.io import read_parquet, write_parquet
from llmlab.runtime import (
    Runtime,
    check_prepared_model,
    check_quantization_available,
    free_memory,
    keep_4bit_layout_trainable,
    load_base_model,
    require_device,
    resolve_precision,
)
from llmlab.schemas import BASE_SYSTEM as BASE
from llmlab.schemas import GENERATIONS_SCHEMA, HELDOUT_ANSWERS, HELDOUT_LOSS, MESSAGES_SCHEMA
from llmlab.sft_data.chat import END_OF_TURN, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    text: str
    new_tokens: int
    finished: bool


# --------------------------------------------------------------------------- generation


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[str]:
    """Each prompt as one user turn in the tokenizer's chat template, ready for the answer."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]


def decode_answer(
    tokenizer: PreTrainedTokenizerBase, new_ids: Sequence[int], stop_ids: set[int]
) -> Answer:
    """The answer text of one generated sequence: up to eos / end of turn, without them.

    `new_tokens` counts the tokens generated before eos (the `<|eot_id|>` text included).
    """
    ids = list(new_ids)
    finished = False
    for i, token in enumerate(ids):
        if token in stop_ids:  # eos, or the padding after a row that stopped earlier
            ids, finished = ids[:i], True
            break
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if END_OF_TURN in text:
        text, finished = text.split(END_OF_TURN, 1)[0], True
    return Answer(text=text.strip(), new_tokens=len(ids), finished=finished)


def generate_answers(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    gen: GenerationConfig,
) -> list[Answer]:
    """Answers of `model` (its active adapter) to `prompts`, batched with left padding."""
    import torch
    from transformers import GenerationConfig as HfGenerationConfig
    from transformers import set_seed

    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    sampling = {"temperature": gen.temperature, "top_p": gen.top_p} if gen.do_sample else {}
    config = HfGenerationConfig(
        do_sample=gen.do_sample,
        max_new_tokens=gen.max_new_tokens,
        repetition_penalty=gen.repetition_penalty,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        stop_strings=[END_OF_TURN],
        **sampling,
    )
    texts = render_prompts(tokenizer, prompts)
    answers: list[Answer] = []
    set_seed(gen.seed)  # the same random stream for every system
    for start in range(0, len(texts), gen.batch_size):
        batch = tokenizer(
            texts[start : start + gen.batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the template renders bos itself
        ).to(model.device)
        with torch.no_grad():
            out = model.generate(**batch, generation_config=config, tokenizer=tokenizer)
        width = batch["input_ids"].shape[1]
        answers += [decode_answer(tokenizer, row[width:].tolist(), stop_ids) for row in out]
    return answers


def attach_adapters(base: PreTrainedModel, adapters: Mapping[str, Path]) -> Any:
    """A PeftModel over `base` holding every adapter under its variant name."""
    from peft import PeftModel

    names = list(adapters)
    model = PeftModel.from_pretrained(base, adapters[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapters[name], adapter_name=name)
    model.eval()
    return model


def answer_rows(
    system: str, prompts: Sequence[str], answers: Sequence[Answer]
) -> list[dict[str, Any]]:
    """GENERATIONS_SCHEMA rows of one system's answers, whichever engine produced them."""
    return [
        {
            "prompt_id": i,
            "prompt": prompt,
            "system": system,
            "answer": answer.text,
            "new_tokens": answer.new_tokens,
            "finished": answer.finished,
        }
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True))
    ]


def generations_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=GENERATIONS_SCHEMA).sort("prompt_id", maintain_order=True)


def compare_generations(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    systems: Sequence[str],
    gen: GenerationConfig,
    prompts: Sequence[str] | None = None,
) -> pl.DataFrame:
    """One row per (prompt, system): `base` (adapters disabled) and each adapter by name, on
    `prompts` (default: the showcase prompts of `gen`)."""
    prompts = list(gen.prompts if prompts is None else prompts)
    rows = []
    for system in systems:
        log.info("generating: %s (%d prompts)", system, len(prompts))
        if system == BASE:
            with model.disable_adapter():
                answers = generate_answers(model, tokenizer, prompts, gen)
        else:
            model.set_adapter(system)
            answers = generate_answers(model, tokenizer, prompts, gen)
        rows += answer_rows(system, prompts, answers)
    return generations_frame(rows)


# --------------------------------------------------------------------------- reference loss


@contextlib.contextmanager
def fused_lm_head(model: Any) -> Iterator[None]:
    """TRL's fused LM head on `model` (a PeftModel or a plain one) for the block: forwards
    with `fused_lm_head=True` return per-token log-probabilities of the labels without the
    (batch, length, vocabulary) logits, the kernel train_lora's held-out loss uses. Removed
    afterwards, so generation runs the model's own forward."""
    from trl.trainer.utils import add_fused_lm_head

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = target.__dict__.get("forward")  # an instance-level forward the patch replaces
    add_fused_lm_head(target)
    try:
        yield
    finally:
        if own is None:
            del target.forward
        else:
            target.forward = own


def reference_nll(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    references: Sequence[str],
    batch_size: int,
) -> list[tuple[float, int]]:
    """Per (prompt, reference answer): the summed negative log-likelihood (nats) of the
    answer given the prompt under `model` (its active adapter), and the number of tokens.

    The tokens and the loss are train_lora's: the dialogue [user: prompt, assistant:
    reference] through the chat template with TRL's assistant mask (the answer, `<|eot_id|>`
    and eos; llmlab.sft_data.chat.tokenize_chats), batched by TRL's collator, scored by TRL's
    fused LM head (llmlab.train.heldout_loss). Not cut at a variant's max_length: every
    system is scored on the same whole answers.
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    conversations = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
        for p, r in zip(prompts, references, strict=True)
    ]
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    out: list[tuple[float, int]] = []
    with fused_lm_head(model), torch.no_grad():
        for start in range(0, len(conversations), batch_size):
            enc = tokenizer.apply_chat_template(
                conversations[start : start + batch_size],
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )
            examples = [
                {
                    "input_ids": ids,
                    "labels": [t if m else -100 for t, m in zip(ids, mask, strict=True)],
                }
                for ids, mask in zip(enc["input_ids"], enc["assistant_masks"], strict=True)
            ]
            batch = {k: v.to(model.device) for k, v in collate(examples).items()}
            result = model(**batch, fused_lm_head=True)
            nll = (-result.log_probs.double() * result.label_mask).sum(1)
            tokens = result.label_mask.sum(1)
            out += [(float(x), int(n)) for x, n in zip(nll.tolist(), tokens.tolist(), strict=True)]
    empty = [i for i, (_, n) in enumerate(out) if n == 0]
    if empty:
        raise UserError(f"held-out reference {empty[0]} has no assistant token to score")
    return out


def reference_losses(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    systems: Sequence[str],
    held: pl.DataFrame,
    batch_size: int,
) -> pl.DataFrame:
    """`reference_nll` of every system (base: adapters disabled) on the held-out prompts:
    one row per (system, prompt_id), the HELDOUT_LOSS columns."""
    prompts, references = held["prompt"].to_list(), held["reference"].to_list()
    rows = []
    for system in systems:
        log.info("scoring the reference answers: %s (%d prompts)", system, held.height)
        if system == BASE:
            with model.disable_adapter():
                scores = reference_nll(model, tokenizer, prompts, references, batch_size)
        else:
            model.set_adapter(system)
            scores = reference_nll(model, tokenizer, prompts, references, batch_size)
        rows += [
            {"system": system, "prompt_id": pid, "reference_nll": nll, "reference_tokens": n}
            for pid, (nll, n) in zip(held["prompt_id"], scores, strict=True)
        ]
    return pl.DataFrame(
        rows,
        schema={
            "system": pl.String,
            "prompt_id": pl.Int64,
            "reference_nll": pl.Float64,
            "reference_tokens": pl.Int64,
        },
    )


# --------------------------------------------------------------------------- vLLM


def lora_rank_bound(adapters: Mapping[str, Path]) -> int:
    """vLLM's max_lora_rank: the smallest size it accepts that holds every adapter's rank."""
    import json

    ranks = [json.loads((p / "adapter_config.json").read_text())["r"] for p in adapters.values()]
    for bound in VLLM_MAX_LORA_RANKS:
        if bound >= max(ranks):
            return bound
    raise UserError(
        f"LoRA rank {max(ranks)} is above vLLM's largest max_lora_rank ({VLLM_MAX_LORA_RANK})"
    )


def load_trained_base(model_dir: Path, runtime: Runtime) -> PreTrainedModel:
    """The base weights the QLoRA adapters were trained against, unquantized: the folder
    loaded 4-bit NF4 as train_lora loads it, then dequantized to `runtime`'s dtype.

    bitsandbytes computes a 4-bit layer as the matmul of its dequantized weight, so these are
    the numbers the adapters saw, stored in a dtype any engine serves (the pinned vLLM has no
    bitsandbytes quantization). The original folder's weights would be another model, by the
    base's quantization error (README, "Generation design": measured).
    """
    model = load_base_model(model_dir, dataclasses.replace(runtime, quantize=True))
    keep_4bit_layout_trainable(model)  # the layout train_lora computed with (CPU)
    # transformers' dequantize also drops the quantization config: a plain model is saved.
    return model.dequantize(dtype=runtime.dtype)


@contextlib.contextmanager
def served_base(model_dir: Path, runtime: Runtime, dequantize: bool) -> Iterator[Path]:
    """The folder vLLM loads: `model_dir` itself, or with `dequantize` (QLoRA adapters) the
    dequantized 4-bit base written to a temporary folder (under TMPDIR; the model's size in
    the run's dtype), removed when the block ends."""
    if not dequantize:
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix="llmlab-dequantized-") as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        model = load_trained_base(model_dir, runtime)
        model.save_pretrained(out)
        del model
        free_memory()  # before vLLM measures the free GPU memory
        load_tokenizer(model_dir).save_pretrained(out)
        log.info(
            "dequantized the 4-bit base into %s in %.1f s (the weights the adapters trained on)",
            out,
            time.perf_counter() - start,
        )
        yield out


class VllmGenerator:
    """One vLLM engine for the base model and every adapter: each system is the same batch
    with its `LoRARequest` (none for the base). Inputs are the token ids of the same rendered
    prompts as the transformers path; each request is seeded (`SamplingParams.seed`), so a
    rerun on the same GPU draws the same texts."""

    def __init__(
        self,
        model_dir: Path,
        adapters: Mapping[str, Path],
        gen: GenerationConfig,
        cfg: Any,
        device: str,
    ) -> None:
        from llmlab.eval.backends import VllmBackend, start_vllm

        self.adapters = dict(adapters)
        self.gen = gen
        engine = VllmBackend.engine_args(model_dir, cfg)
        engine |= {
            "enable_lora": True,
            "max_loras": max(1, len(adapters)),
            "max_lora_rank": lora_rank_bound(adapters),
            "hf_overrides": {},  # generation needs no float32 label head
        }
        # No `quantization`: the config refuses quantize with this backend (the pinned vLLM
        # has no bitsandbytes); QLoRA adapters get the dequantized base (served_base).
        self.llm = start_vllm(engine, device)

    def answers(self, system: str, token_ids: Sequence[list[int]]) -> list[Answer]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        gen = self.gen
        params = SamplingParams(
            temperature=gen.temperature if gen.do_sample else 0.0,
            top_p=gen.top_p if gen.do_sample else 1.0,
            repetition_penalty=gen.repetition_penalty,
            max_tokens=gen.max_new_tokens,
            seed=gen.seed,
            stop=[END_OF_TURN],
            skip_special_tokens=True,
        )
        lora = None
        if system != BASE:
            lora_id = list(self.adapters).index(system) + 1  # ids start at 1
            lora = LoRARequest(system, lora_id, str(self.adapters[system]))
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in token_ids],
            params,
            lora_request=lora,
            use_tqdm=False,
        )
        result = []
        for out in outputs:
            o = out.outputs[0]
            result.append(
                Answer(
                    text=o.text.split(END_OF_TURN, 1)[0].strip(),
                    new_tokens=len(o.token_ids),
                    finished=o.finish_reason == "stop",
                )
            )
        return result


def vllm_generations(
    generator: VllmGenerator,
    tokenizer: PreTrainedTokenizerBase,
    systems: Sequence[str],
    prompts: Sequence[str],
) -> pl.DataFrame:
    """compare_generations' table, from the vLLM engine."""
    texts = render_prompts(tokenizer, prompts)
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    rows = []
    for system in systems:
        log.info("generating (vllm): %s (%d prompts)", system, len(prompts))
        rows += answer_rows(system, prompts, generator.answers(system, ids))
    return generations_frame(rows)


# --------------------------------------------------------------------------- tables


def _adapter_map(cfg: Config, adapters: Sequence[Path]) -> dict[str, Path]:
    """Variant name (the adapter folder's name) -> folder, checked against sft.variants."""
    out: dict[str, Path] = {}
    for path in adapters:
        name = path.name
        check_key(name, cfg.sft.variants, flag=f"{path}: adapter folder name", where="sft.variants")
        if name in out:
            raise UserError(f"{path}: two adapters for variant {name!r}")
        if not (path / "adapter_config.json").is_file():
            raise UserError(f"{path}: not a LoRA adapter folder (no adapter_config.json)")
        out[name] = path
    return out


def run_compare_generations(
    cfg: Config,
    model_dir: Path,
    adapters: list[Path],
    generations: Path,
    *,
    train: Sequence[Path] = (),
    eval: Sequence[Path] = (),
    heldout: Path | None = None,
) -> None:
    """compare_generations: base + adapters answer the showcase prompts (`generations`) and,
    given the variants' train/eval splits, the held-out prompts (`heldout`: with the
    reference answers and each system's loss on them, for llmlab.sft_eval)."""
    bind_gpus(cfg.device, 1)
    require_device(cfg.device)
    gen = cfg.sft.generation
    device = cfg.device
    check_prepared_model(model_dir)
    adapter_paths = _adapter_map(cfg, adapters)
    # Order columns as in params.yaml, whatever order the files came in.
    variants = [v for v in cfg.sft.variants if v in adapter_paths]
    qlora = [v for v in variants if cfg.sft.variants[v].quantize]
    # The base every system is served on: the weights the QLoRA adapters were trained against,
    # 4-bit (quantize: true) or dequantized (false: what vLLM can serve). Same numbers.
    dequantize = bool(qlora) and not gen.quantize
    if gen.quantize or dequantize:
        check_quantization_available(
            device,
            "sft.generation.quantize" if gen.quantize else f"sft.variants.{qlora[0]}.quantize",
        )
    runtime = Runtime(
        device=device,
        precision=resolve_precision("auto", device, "sft.generation"),
        optim="",
        quantize=gen.quantize,
    )
    if gen.quantize or dequantize:
        for name in sorted(set(variants) - set(qlora)):
            log.warning(
                "variant %s was trained on the unquantized base but is served on the 4-bit "
                "one the QLoRA variants (%s) were trained on",
                name,
                ", ".join(qlora) or "none",
            )
    if dequantize:
        log.info(
            "QLoRA variants (%s): serving the 4-bit NF4 base dequantized to %s, the weights "
            "they were trained on",
            ", ".join(qlora),
            runtime.precision,
        )
    held = None
    if heldout is not None:
        from llmlab.sft_eval import heldout_prompts

        held = heldout_prompts(
            [read_parquet(p, MESSAGES_SCHEMA) for p in train],
            [read_parquet(p, MESSAGES_SCHEMA) for p in eval],
            cfg.sft.heldout.count,
            cfg.sft.heldout.seed,
        )
        log.info("%d held-out prompts", held.height)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "left"  # batched generation continues every row at the end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    systems = [BASE, *variants]
    served = {v: adapter_paths[v] for v in variants}
    losses = None
    with contextlib.ExitStack() as stack:
        if gen.backend == "vllm":
            serve_dir = stack.enter_context(served_base(model_dir, runtime, dequantize))
            if held is not None:
                # The reference answers' loss: transformers forward passes on the weights vLLM
                # serves, freed before the engine measures the free GPU memory.
                model = attach_adapters(load_base_model(serve_dir, runtime), served)
                losses = reference_losses(model, tokenizer, systems, held, gen.batch_size)
                del model
                free_memory()
            generator = VllmGenerator(serve_dir, served, gen, cfg.eval.vllm, device)

            def answer_all(prompts: Sequence[str] | None = None) -> pl.DataFrame:
                return vllm_generations(generator, tokenizer, systems, prompts or gen.prompts)
        else:
            base = (
                load_trained_base(model_dir, runtime)
                if dequantize
                else load_base_model(model_dir, runtime)
            )
            model = attach_adapters(base, served)
            if held is not None:
                losses = reference_losses(model, tokenizer, systems, held, gen.batch_size)

            def answer_all(prompts: Sequence[str] | None = None) -> pl.DataFrame:
                return compare_generations(model, tokenizer, systems, gen, prompts)

        df = answer_all()
        if held is not None:
            answers = answer_all(held["prompt"].to_list())
            answers = (
                answers.drop("prompt")
                .join(held, on="prompt_id", maintain_order="left")
                .join(losses, on=["system", "prompt_id"], maintain_order="left")
                .select(*HELDOUT_ANSWERS, *HELDOUT_LOSS)
            )
            write_parquet(answers, heldout)
    write_parquet(df, generations)
    unfinished = df.filter(~pl.col("finished"))
    log.info(
        "%d answers, %d cut at max_new_tokens (%s)",
        df.height,
        unfinished.height,
        ", ".join(sorted(set(unfinished["system"]))) or "none",
    )
