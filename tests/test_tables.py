"""The report's tables, rendered from the stages' data with one set of filters."""

from __future__ import annotations

import re

import polars as pl

from llmlab.schemas import BASE_SYSTEM as BASE
from llmlab.schemas import GENERATIONS_SCHEMA
from llmlab.tables import generations_table, loss_table, md_cell, p_value, pct, pts
from tests.test_generate import demo_config


def table_rows(markdown: str) -> list[list[str]]:
    """Cells of each table line, split on unescaped pipes (as GitHub does)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            rows.append(re.split(r"(?<!\\)\|", line.strip())[1:-1])
    return rows


def test_filters() -> None:
    assert (pct(0.6123), pct(None), pct(0.5, 0)) == ("61.2%", "–", "50%")
    assert (pts(0.032), pts(-0.1)) == ("+3.2 pts", "-10.0 pts")
    assert (p_value(0.0004), p_value(0.0312), p_value(None)) == ("p < 0.001", "p = 0.031", "–")


def test_md_cell_keeps_one_cell_and_renders_literally() -> None:
    cell = md_cell("a | b\n\nc <b>bold</b> & <|eot_id|>  ")
    assert cell == r"a \| b<br><br>c &lt;b&gt;bold&lt;/b&gt; &amp; &lt;\|eot_id\|&gt;"
    assert md_cell("   ") == "*(empty)*"


def test_generations_table_has_one_row_per_prompt_and_a_column_per_system() -> None:
    gen = demo_config().sft.generation
    rows = [
        {
            "prompt_id": i,
            "prompt": prompt,
            "system": system,
            "answer": f"{system} | answer\nline two",
            "new_tokens": 5,
            "finished": system != "b",
        }
        for i, prompt in enumerate(["first | prompt", "second"])
        for system in (BASE, "a", "b")
    ]
    df = pl.DataFrame(rows, schema=GENERATIONS_SCHEMA)
    cells = table_rows(generations_table(df, [BASE, "a", "b"], gen))
    assert cells[0] == [" # ", " prompt ", " base (no adapter) ", " variant a ", " variant b "]
    assert len(cells) == 4 and all(len(row) == 5 for row in cells)
    assert cells[2][1].strip() == r"first \| prompt"
    assert cells[2][3].strip() == r"a \| answer<br>line two"
    assert cells[2][4].strip().endswith("*(cut at max_new_tokens)*")


def test_loss_table_lists_each_variant_with_base_loss() -> None:
    metrics = [
        {
            "variant": v,
            "eval_loss": loss,
            "perplexity": 2.718281828**loss,
            "base_eval_loss": 2.5,
            "base_perplexity": 12.18,
            "eval_tokens": 1000,
            "steps": 100,
            "lora": {"r": r, "alpha": 2 * r},
            "training": {"learning_rate": 2e-4},
            "trainable_params": 41_943_040,
            "train_runtime_s": 812.4,
        }
        for v, loss, r in (("a", 1.25, 16), ("b", 1.5, 64))
    ]
    cells = table_rows(loss_table(metrics))
    assert [c.strip() for c in cells[2]] == [
        "a",
        "1.250",
        "3.49",
        "2.500",
        "12.18",
        "1,000",
        "100",
        "16 / 32",
        "0.0002",
        "41,943,040",
        "812",
    ]
    assert cells[3][0].strip() == "b"
