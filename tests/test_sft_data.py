"""SFT data: every filter heuristic, the funnel and the sample, role renaming, the chat
template and the loss mask TRL builds from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from llmlab.config import FilterConfig, read_params_file, resolve
from llmlab.errors import UserError
from llmlab.io import write_parquet
from llmlab.schemas import SAIGA_FULL_SCHEMA
from llmlab.sft_data import dedup
from llmlab.sft_data.chat import (
    END_OF_TURN,
    apply_chat_template_to,
    count_tokens,
    declared_tokenizer_class,
    dialogue_problems,
    expected_trained_text,
    format_chats,
    load_chat_template,
    load_tokenizer,
    rename_roles,
    split_train_eval,
    tokenize_chats,
    validate_dialogues,
)
from llmlab.sft_data.filters import (
    apply_steps,
    check_filter_config,
    filter_dialogues,
    stratified_sample,
    well_formed_reasons,
)
from tests.saiga_rows import row

ROLE_MAP = {"system": "system", "user": "user", "bot": "assistant"}
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SAIGA_FULL_SCHEMA)


def qa(question: str, answer: str = "Ответ.", **fields: Any) -> dict[str, Any]:
    return row(("user", question), ("bot", answer), **fields)


def only(step: str, **settings: Any) -> FilterConfig:
    """A config with every step off except `step` (with `settings`), no sampling effect."""
    off = {name: {"enabled": False} for name, _ in FilterConfig().steps()}
    off[step] = {"enabled": True, **settings}
    return FilterConfig(**off, target_size=10_000, min_rows=1)


def kept_questions(df: pl.DataFrame, cfg: FilterConfig, count_tokens=None) -> list[str]:
    kept, _ = apply_steps(df, cfg, count_tokens)
    users = kept["messages"].list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")
    )
    return [u[0] for u in users.to_list()]


# --------------------------------------------------------------------------- heuristics


def test_well_formed_names_each_problem_and_keeps_good_rows():
    df = frame(
        qa("ok"),
        row(("system", "persona"), ("user", "ok with system"), ("bot", "a")),
        row(("bot", "hello"), ("user", "q"), ("bot", "a")),
        row(("user", "q"), ("bot", "  ")),
        row(("user", "q"), ("system", "late"), ("bot", "a")),
        row(("user", "q1"), ("user", "q2"), ("bot", "a")),
        row(("user", "q"), ("bot", "a"), turns=2),
        row(("user", "q"), ("robot", "a"), ("bot", "b")),
        row(("user", "q"), ("bot", "a"), ("user", "dangling")),
        row(),
    )
    assert well_formed_reasons(df).to_list() == [
        None,
        None,
        "no_user_before_bot",
        "empty_message",
        "system_not_first",
        "roles_do_not_alternate",
        "turns_mismatch",
        "unknown_role",
        "roles_do_not_alternate",
        "no_messages",
    ]
    kept, funnel = apply_steps(df, only("well_formed"))
    assert kept.height == 2
    step = next(s for s in funnel.steps if s.step == "well_formed")
    assert step.removed == 8 and step.details["roles_do_not_alternate"] == 2


def test_language_keep_and_null_values():
    df = frame(qa("ru"), qa("en", language="English"), qa("null", language=None))
    assert kept_questions(df, only("language", keep=["Russian"])) == ["ru"]
    assert kept_questions(df, only("language", keep=None, drop=["English"])) == ["ru"]
    assert kept_questions(df, only("language", keep=["Russian", "English"])) == ["ru", "en"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", [["system", "user", "bot"], ["user", "bot"]]),
        ("strip", [["user", "bot"], ["user", "bot"]]),
        ("drop_row", [["user", "bot"]]),
    ],
)
def test_single_turn_and_system_message(mode, expected):
    df = frame(
        row(("system", "persona"), ("user", "q1"), ("bot", "a")),
        qa("q2"),
        row(("user", "q3"), ("bot", "a"), ("user", "q4"), ("bot", "b")),
    )
    kept, _ = apply_steps(df, only("single_turn", system_message=mode))
    roles = kept["messages"].list.eval(pl.element().struct.field("role")).to_list()
    assert roles == expected
    assert kept.schema == df.schema


def test_opus_score_threshold_is_inclusive():
    df = frame(qa("7", opus_score=7), qa("8", opus_score=8), qa("10", opus_score=10))
    assert kept_questions(df, only("opus_score", min=8)) == ["8", "10"]


def test_is_bad_by_regex_drops_flagged_rows():
    df = frame(qa("good"), qa("bad", is_bad_by_regex=True))
    assert kept_questions(df, only("is_bad_by_regex")) == ["good"]


def test_complexity_and_topic_sets():
    df = frame(
        qa("easy", sonnet_complexity="easy"),
        qa("hard", sonnet_complexity="hard"),
        qa("inappropriate", sonnet_topic="inappropriate"),
    )
    assert kept_questions(df, only("sonnet_complexity", keep=["medium", "hard"])) == [
        "hard",
        "inappropriate",
    ]
    assert kept_questions(df, only("sonnet_topic", drop=["inappropriate"])) == ["easy", "hard"]


def test_extra_regex_only_on_the_configured_roles():
    df = frame(
        qa("Ты Claude?", "Нет."),
        qa("Кто ты?", "Я Claude, модель Anthropic."),
        qa("Что такое claudication?", "Хромота."),
    )
    step = {"patterns": [r"(?i)\bclaude\b"], "roles": ["bot"]}
    assert kept_questions(df, only("extra_regex", **step)) == [
        "Ты Claude?",
        "Что такое claudication?",
    ]
    step["roles"] = ["user", "bot"]
    assert kept_questions(df, only("extra_regex", **step)) == ["Что такое claudication?"]


def test_token_length_bounds_use_the_counter():
    df = frame(qa("short", "a"), qa("medium", "a" * 50), qa("long", "a" * 500))

    def chars(messages: pl.Series) -> np.ndarray:
        # Stand-in for the tokenizer: characters of all contents.
        return (
            messages.list.eval(pl.element().struct.field("content").str.len_chars())
            .list.sum()
            .to_numpy()
        )

    cfg = only("token_length", min_tokens=20, max_tokens=100)
    assert kept_questions(df, cfg, chars) == ["medium"]
    _, funnel = apply_steps(df, cfg, chars)
    assert funnel.steps[-3].details == {"below_min_tokens": 1, "above_max_tokens": 1}
    with pytest.raises(ValueError, match="token counter"):
        apply_steps(df, cfg)


def test_exact_duplicates_are_normalised_and_keep_the_best_row():
    df = frame(
        qa("Привет, как дела?", opus_score=8),
        qa("ПРИВЕТ   как дела", opus_score=10),
        qa("Привет! Как дела?!", opus_score=10),
        qa("Другое", opus_score=5),
    )
    kept, _ = apply_steps(df, only("exact_duplicates"))
    # Best score wins; among equal scores the earlier row; input order is kept.
    assert kept["messages"].list.first().struct.field("content").to_list() == [
        "ПРИВЕТ   как дела",
        "Другое",
    ]


LONG = (
    "Напиши подробное эссе о влиянии климатических изменений на сельское хозяйство "
    "в северных регионах России с примерами и статистикой за последние двадцать лет"
)


def test_near_duplicates_one_word_edit_in_a_long_prompt():
    edited = LONG.replace("подробное", "короткое")
    assert edited != LONG
    df = frame(
        qa(LONG, opus_score=8),
        qa(LONG + " пожалуйста", opus_score=9),
        qa(edited, opus_score=8),
        qa("Как приготовить борщ с фасолью и копчёностями на большую семью", opus_score=8),
    )
    cfg = only("near_duplicates", ngram=3, threshold=0.5, num_perm=128, bands=64)
    kept = kept_questions(df, cfg)
    # The three variants of LONG collapse to the best-scored one; the unrelated prompt stays.
    assert kept == [
        LONG + " пожалуйста",
        "Как приготовить борщ с фасолью и копчёностями на большую семью",
    ]


def test_near_duplicates_keep_prompts_that_only_share_a_few_ngrams():
    a = "Переведи на английский: " + LONG
    b = "Переведи на английский: мама мыла раму, а папа читал газету у окна вечером"
    df = frame(qa(a), qa(b))
    assert len(kept_questions(df, only("near_duplicates"))) == 2


def test_minhash_similarity_estimates_jaccard():
    words = [chr(c) for c in range(ord("a"), ord("u"))]
    texts = pl.Series([" ".join(words), " ".join(words[:10] + [w + "x" for w in words[10:]])])
    hashes, rows = dedup.shingle_hashes(dedup.normalised_words(texts), ngram=2, seed=1)
    sig = dedup.minhash_signatures(hashes, rows, 2, num_perm=512, seed=1)
    # Shingle sets: 19 bigrams each, 9 shared -> Jaccard 9 / 29.
    estimate = float((sig[0] == sig[1]).mean())
    assert abs(estimate - 9 / 29) < 0.08


def test_shingles_cover_short_and_empty_prompts():
    words = dedup.normalised_words(pl.Series(["один два", "", None, "один два"]))
    hashes, rows = dedup.shingle_hashes(words, ngram=8, seed=0)
    assert rows.tolist() == [0, 1, 2, 3]
    assert hashes[0] == hashes[3] and hashes[0] != hashes[1] and hashes[1] == hashes[2]


def test_disabled_steps_are_listed_but_do_nothing():
    df = frame(qa("a", opus_score=1), qa("b", language="English"))
    cfg = FilterConfig(
        opus_score={"enabled": False},
        language={"enabled": False},
        token_length={"enabled": False},
        target_size=10,
        min_rows=1,
    )
    kept, funnel = filter_dialogues(df, cfg)
    assert kept.height == 2
    assert [s.step for s in funnel.steps] == [name for name, _ in cfg.steps()] + ["sample"]
    opus = next(s for s in funnel.steps if s.step == "opus_score")
    assert not opus.enabled and opus.removed == 0
    assert "opus_score" not in funnel.describe()


def test_config_checks_catch_typos_and_bad_regexes():
    with pytest.raises(ValueError, match=r"x\.language\.keep: \['russian'\]"):
        check_filter_config(FilterConfig(language={"keep": ["russian"]}), "x")
    with pytest.raises(ValueError, match=r"x\.extra_regex\.patterns\[1\]"):
        check_filter_config(FilterConfig(extra_regex={"patterns": ["ok", "(unclosed"]}), "x")
    check_filter_config(FilterConfig(), "x")


# --------------------------------------------------------------------------- sampling


def topic_frame(counts: dict[str, int]) -> pl.DataFrame:
    return frame(
        *(qa(f"{topic} {i}", sonnet_topic=topic) for topic, n in counts.items() for i in range(n))
    )


def test_stratified_sample_allocates_proportionally_and_exactly():
    df = topic_frame({"facts": 500, "coding": 300, "math": 150, "law": 50})
    sample = stratified_sample(df, 101, "sonnet_topic", seed=3)
    assert sample.height == 101
    counts = dict(sample.group_by("sonnet_topic").len().iter_rows())
    # Exact shares 50.5, 30.3, 15.15, 5.05 -> floors 50, 30, 15, 5 plus one for facts.
    assert counts == {"facts": 51, "coding": 30, "math": 15, "law": 5}


def test_stratified_sample_is_seeded_and_keeps_input_order():
    df = topic_frame({"facts": 200, "coding": 100}).with_row_index("i")
    a = stratified_sample(df, 60, "sonnet_topic", seed=1)
    assert a.equals(stratified_sample(df, 60, "sonnet_topic", seed=1))
    assert not a.equals(stratified_sample(df, 60, "sonnet_topic", seed=2))
    assert a["i"].is_sorted()
    assert stratified_sample(df, 1000, "sonnet_topic", seed=1).equals(df)
    assert stratified_sample(df, 60, None, seed=1).height == 60


# --------------------------------------------------------------------------- stage


def demo_config(**filter_overrides: Any):
    raw = read_params_file(PARAMS)
    raw = copy.deepcopy(raw)
    raw["presets"]["demo"]["sft"]["variants"]["a"]["filter"].update(filter_overrides)
    return resolve(raw, "demo")


def test_run_filter_saiga_too_few_rows_prints_the_funnel_and_writes_nothing(tmp_path):
    from llmlab.sft_data.run import run_filter_saiga

    raw = tmp_path / "saiga.parquet"
    write_parquet(frame(*(qa(f"вопрос номер {i}") for i in range(30))), raw)
    cfg = demo_config(token_length={"enabled": False}, min_rows=50, target_size=60)
    outputs = {
        "kept": tmp_path / "k.parquet",
        "funnel": tmp_path / "f.json",
        "figure": tmp_path / "f.png",
    }
    with pytest.raises(
        UserError, match=r"min_rows: only 30 rows .* Funnel: input 30 -> well_formed 30"
    ):
        run_filter_saiga(cfg, "a", raw, tmp_path / "no-tokenizer", **outputs)
    assert not any(p.exists() for p in outputs.values())

    cfg = demo_config(token_length={"enabled": False}, min_rows=20, target_size=25)
    run_filter_saiga(cfg, "a", raw, tmp_path / "no-tokenizer", **outputs)
    funnel = json.loads(outputs["funnel"].read_text())
    assert funnel["input_rows"] == 30 and funnel["kept_rows"] == 25
    assert funnel["steps"][-1]["step"] == "sample"
    assert pl.read_parquet(outputs["kept"]).schema == SAIGA_FULL_SCHEMA


# --------------------------------------------------------------------------- roles


def renamed_frame(*conversations: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"messages": [[{"content": c, "role": r} for r, c in conv] for conv in conversations]},
        schema={"messages": SAIGA_FULL_SCHEMA["messages"]},
    )


def test_rename_roles_maps_bot_to_assistant():
    df = frame(row(("system", "s"), ("user", "q"), ("bot", "a")))
    out = rename_roles(df, ROLE_MAP)
    assert out["messages"].to_list() == [
        [
            {"content": "s", "role": "system"},
            {"content": "q", "role": "user"},
            {"content": "a", "role": "assistant"},
        ]
    ]
    assert out.schema == df.schema
    validate_dialogues(out, "test")


def test_rename_roles_names_the_row_of_an_unmapped_role():
    df = frame(qa("q"), row(("user", "q"), ("tool", "x"), ("bot", "a")))
    with pytest.raises(UserError, match=r"row 1: role 'tool' is not a key of sft_data.role_map"):
        rename_roles(df, ROLE_MAP)


def test_dialogue_validation_names_row_and_problem():
    df = renamed_frame(
        [("user", "q"), ("assistant", "a")],
        [("system", "s"), ("user", "q"), ("assistant", "a"), ("user", "q"), ("assistant", "a")],
        [("user", "q"), ("bot", "a")],
        [("user", "q"), ("system", "s"), ("assistant", "a")],
        [("assistant", "a"), ("user", "q"), ("assistant", "a")],
        [("user", "q"), ("assistant", "a"), ("user", "q")],
        [("user", "q"), ("assistant", " ")],
        [("system", "s")],
    )
    assert dialogue_problems(df).rows() == [
        (2, "role bot is not one of system, user, assistant"),
        (3, "a system message that is not the first message"),
        (4, "user and assistant do not alternate starting with user"),
        (5, "the last message is not from the assistant"),
        (6, "an empty message"),
        (7, "no user or assistant message"),
    ]
    with pytest.raises(UserError, match=r"^where: row 2: role bot .* \(5 more invalid rows\)$"):
        validate_dialogues(df, "where")


# --------------------------------------------------------------------------- chat template

CONVERSATION = [
    {"role": "system", "content": "Ты полезный ассистент."},
    {"role": "user", "content": "Сколько будет 2+2?"},
    {"role": "assistant", "content": " Будет 4. "},
    {"role": "user", "content": "А 3+3?"},
    {"role": "assistant", "content": "6."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return apply_chat_template_to(AutoTokenizer.from_pretrained(tiny_llama_dir))


def test_template_renders_llama3_style_turns_with_one_bos(tokenizer):
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == (
        f"{bos}<|start_header_id|>system<|end_header_id|>\nТы полезный ассистент.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\nСколько будет 2+2?<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\nБудет 4.<|eot_id|>{eos}"
        "<|start_header_id|>user<|end_header_id|>\nА 3+3?<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n6.<|eot_id|>{eos}"
    )
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:2], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n")
    ids = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1


def test_count_tokens_matches_the_tokenizer_per_text_with_repeats(tokenizer):
    # More texts than one batch, many repeated: each count is that text's own token count.
    texts = [f"ответ {i % 7} " * (i % 5) + "<|im_end|>" * (i % 2) for i in range(2 * 2048 + 3)]
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert count_tokens(tokenizer, texts).tolist() == expected
    assert count_tokens(tokenizer, []).tolist() == []


TOKENIZER_PROBES = [
    "Привет, мир!  Two  spaces\tand a tab\n\nnew lines",
    "<|im_start|>user\nhi<|im_end|> <|endoftext|> <|eot_id|>",
    "emoji 🙂, accents café, CJK 漢字, digits 1234567890",
    "   leading and trailing   ",
]


@pytest.mark.parametrize("model_dir", ["smollm2_dir", "gemma3_dir", "tiny_llama_dir"])
def test_load_tokenizer_equals_auto_tokenizer(model_dir, request):
    # load_tokenizer skips AutoTokenizer for generic tokenizers (speed); counts and templates
    # must stay exactly AutoTokenizer's, for every kind of model folder the project prepares.
    from transformers import AutoTokenizer

    folder = request.getfixturevalue(model_dir)
    ours = load_tokenizer(folder)
    auto = apply_chat_template_to(AutoTokenizer.from_pretrained(folder))
    assert type(ours) is type(auto)
    assert ours.special_tokens_map == auto.special_tokens_map
    assert ours.backend_tokenizer.to_str() == auto.backend_tokenizer.to_str()
    for text in TOKENIZER_PROBES:
        assert ours(text)["input_ids"] == auto(text)["input_ids"], text
    chat = [
        {"role": "user", "content": TOKENIZER_PROBES[0]},
        {"role": "assistant", "content": "ok"},
    ]
    assert ours.apply_chat_template(chat) == auto.apply_chat_template(chat)


def test_load_tokenizer_of_a_generic_tokenizer_does_not_import_torch(smollm2_dir):
    # The whole point of the shortcut: AutoTokenizer pulls torch and scikit-learn (~5 s).
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from llmlab.sft_data.chat import load_tokenizer; "
        f"load_tokenizer(Path({str(smollm2_dir)!r})); "
        "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_declared_tokenizer_class(tmp_path):
    assert declared_tokenizer_class(tmp_path) is None  # no tokenizer_config.json
    config = tmp_path / "tokenizer_config.json"
    for text, expected in [
        ('{"tokenizer_class": "TokenizersBackend"}', "TokenizersBackend"),
        ('{"tokenizer_class": "GemmaTokenizer"}', "GemmaTokenizer"),
        ("{}", None),
        ("[1, 2]", None),
        ("not json", None),
    ]:
        config.write_text(text)
        assert declared_tokenizer_class(tmp_path) == expected, text


def test_template_markers_are_plain_text(tokenizer):
    vocab_before = len(tokenizer)
    assert "<|eot_id|>" not in tokenizer.get_added_vocab()
    assert len(tokenizer.tokenize(END_OF_TURN)) > 1
    assert len(tokenizer) == vocab_before
    assert "{% generation %}" in load_chat_template().replace("{%-", "{%").replace("-%}", "%}")


def test_loss_mask_and_generation_prompt_checks(tokenizer):
    check = tokenize_chats(tokenizer, [CONVERSATION, CONVERSATION[:3]])
    assert check.mask_mismatches == [] and check.prompt_mismatches == []
    assert check.num_tokens[0] == len(
        tokenizer.apply_chat_template(CONVERSATION, return_dict=True)["input_ids"]
    )


def test_loss_mask_check_catches_tokens_straddling_the_generation_edge(tokenizer):
    import copy as copy_module

    # Without the newline after the header, "|>" and a reply starting with a quote merge into
    # the token '>"', half header: the mask would train on header text.
    broken = copy_module.deepcopy(tokenizer)
    broken.chat_template = load_chat_template().replace("<|end_header_id|>\\n", "<|end_header_id|>")
    assert broken.chat_template != tokenizer.chat_template
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": '"Цитата"'}]
    assert tokenize_chats(tokenizer, [conversation]).mask_mismatches == []
    [(row, expected, got)] = tokenize_chats(broken, [conversation]).mask_mismatches
    assert row == 0 and got != expected and got.endswith(expected)


def test_format_chats_and_split(tokenizer):
    df = renamed_frame(*([("user", f"вопрос {i}"), ("assistant", f"ответ {i}")] for i in range(40)))
    formatted, check = format_chats(df, tokenizer)
    assert check.mask_mismatches == []
    assert formatted.columns == ["messages", "text", "num_tokens"]
    assert formatted["text"][0].endswith(f"ответ 0<|eot_id|>{tokenizer.eos_token}")
    assert formatted["num_tokens"][0] == len(
        tokenizer(formatted["text"][0], add_special_tokens=False)["input_ids"]
    )
    train, eval_ = split_train_eval(formatted.with_row_index("i"), 0.1, seed=7)
    assert (train.height, eval_.height) == (36, 4)
    assert train["i"].is_sorted() and eval_["i"].is_sorted()
    assert set(train["i"]).isdisjoint(eval_["i"])
    assert eval_.equals(split_train_eval(formatted.with_row_index("i"), 0.1, seed=7)[1])
    assert not eval_.equals(split_train_eval(formatted.with_row_index("i"), 0.1, seed=8)[1])


@pytest.mark.slow
def test_trl_assistant_only_loss_trains_exactly_the_assistant_turns(tiny_llama_dir, tmp_path):
    """TRL 1.16's own data path (SFTTrainer dataset preparation) with the project template."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok = apply_chat_template_to(AutoTokenizer.from_pretrained(tiny_llama_dir))
    # TRL's own check that the turn's stop token is trained (it warns otherwise).
    assert is_chat_template_stop_token_trained(tok)
    single = [
        {"role": "user", "content": "Привет! Как дела?"},
        {"role": "assistant", "content": "Отлично, спасибо."},
    ]
    df = renamed_frame(
        [(m["role"], m["content"]) for m in single],
        [(m["role"], m["content"]) for m in CONVERSATION],
    )
    formatted, _ = format_chats(df, tok)
    dataset = datasets.Dataset.from_polars(formatted.select("messages", "text"))
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        args=SFTConfig(
            output_dir=str(tmp_path),
            assistant_only_loss=True,
            max_length=512,
            report_to=[],
            use_cpu=True,
            bf16=False,
        ),
        train_dataset=dataset,
        processing_class=tok,
    )
    # Match prepared rows to dialogues by their text: preparation may shuffle.
    prepared = {tok.decode(r["input_ids"]): r for r in trainer.train_dataset}
    assert len(prepared) == 2
    for i, conversation in enumerate([single, CONVERSATION]):
        ids, labels = (
            prepared[formatted["text"][i]]["input_ids"],
            prepared[formatted["text"][i]]["labels"],
        )
        trained = [t for t, label in zip(ids, labels, strict=True) if label != -100]
        assert all(label in (-100, t) for t, label in zip(ids, labels, strict=True))
        assert tok.decode(trained) == expected_trained_text(conversation, tok.eos_token)
        # TRL tokenized exactly the `text` column (matched above), with a single BOS.
        assert ids.count(tok.bos_token_id) == 1


def test_rename_then_format_stage_io(tiny_llama_dir, tmp_path):
    from llmlab.sft_data.run import run_format_chat, run_rename_roles

    cfg = demo_config()
    filtered = tmp_path / "filtered.parquet"
    write_parquet(frame(*(qa(f"вопрос {i}", f"ответ {i}") for i in range(20))), filtered)
    run_rename_roles(cfg, "a", filtered, tmp_path / "renamed.parquet")
    renamed = pl.read_parquet(tmp_path / "renamed.parquet")
    assert renamed["messages"].list.last().struct.field("role").unique().to_list() == ["assistant"]
    train, eval_ = tmp_path / "train.parquet", tmp_path / "eval.parquet"
    run_format_chat(cfg, "a", tmp_path / "renamed.parquet", Path(tiny_llama_dir), train, eval_)
    parts = pl.read_parquet(train), pl.read_parquet(eval_)
    assert [p.height for p in parts] == [19, 1]  # eval_fraction 0.05 of 20
    assert parts[0].columns == ["messages", "text", "num_tokens"]

    # A dialogue that breaks the structure is named by its row, and nothing is written.
    bad = renamed_frame([("user", "q"), ("assistant", "a")], [("assistant", "a")])
    write_parquet(bad, tmp_path / "bad.parquet")
    with pytest.raises(UserError, match=r"bad.parquet: row 1: user and assistant do not alternate"):
        run_format_chat(
            cfg, "a", tmp_path / "bad.parquet", Path(tiny_llama_dir), tmp_path / "t", tmp_path / "e"
        )
    assert not (tmp_path / "t").exists()
    with pytest.raises(UserError, match=r"--variant 'zz' is not a key of sft.variants"):
        run_rename_roles(cfg, "zz", filtered, tmp_path / "x.parquet")


def test_role_map_must_produce_user_and_assistant():
    from pydantic import ValidationError

    from llmlab.config import SftDataConfig

    with pytest.raises(ValidationError, match=r"no raw role is mapped to \['assistant'\]"):
        SftDataConfig(role_map={"user": "user", "bot": "system"})
