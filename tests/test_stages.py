"""One declaration per stage: the stage module's run() signature is what the rule, the CLI and
dvc.yaml use; code dependencies come from imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from llmlab.dvc_sync import _named, load_rules
from llmlab.stages import SRC, all_stages, closure, code_files, shell_command, stage, stage_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rules() -> dict:
    return {rule.name: rule for rule in load_rules(ROOT / "Snakefile")}


def test_every_rule_is_a_stage_and_every_stage_a_rule(rules) -> None:
    assert set(rules) == set(stage_names())


def test_each_rule_names_exactly_its_stage_parameters(rules) -> None:
    for s in all_stages():
        rule = rules[s.name]
        inputs = set(_named(rule.input)) - {"code"}  # `code`: the computed code dependencies
        params = set(rule.params.keys()) - {"preset", "config"}
        declared = {role: {p.name for p in s.by_role(role)} for role in ROLES}
        assert inputs == declared["input"], s.name
        assert set(_named(rule.output)) == declared["output"], s.name
        assert set(rule.wildcard_names) == declared["wildcards"], s.name
        assert params == declared["params"], s.name
        # The command is rendered from the signature, not written by hand.
        assert " ".join(rule.shellcmd.split()) == shell_command(s.name).replace("\n", " ")


ROLES = ("input", "output", "wildcards", "params")


def test_the_cli_is_built_from_the_signatures() -> None:
    s = stage("train_lora")
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", s.command, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for port in s.ports:
        assert port.flag in proc.stdout
    assert s.help.split(":")[0] in " ".join(proc.stdout.split())


def _llmlab_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("llmlab")}


def test_no_stage_imports_another_and_library_code_imports_no_stage() -> None:
    stages_dir = SRC / "stages"
    for path in sorted(stages_dir.glob("*.py")):
        if path.name == "__init__.py":
            continue
        others = {i for i in _llmlab_imports(path) if i.startswith("llmlab.stages.")}
        assert not others, f"{path.name} imports {others}"
    # Only the orchestration layer (CLI, workflow, dvc_sync) reads the stage registry.
    allowed = {"cli.py", "workflow.py", "dvc_sync.py"}
    for path in sorted(SRC.rglob("*.py")):
        if stages_dir in path.parents or path.name in allowed:
            continue
        assert not any(i.startswith("llmlab.stages") for i in _llmlab_imports(path)), path


def test_code_dependencies_follow_imports_not_lists() -> None:
    eval_code = code_files("eval_llm")
    # eval/run.py imports schemas.py (the schema of the split files): listed by hand, it was
    # missed (as split.py, where SPLIT_SCHEMA lived then).
    assert {"src/llmlab/eval/prompts.py", "src/llmlab/schemas.py"} <= set(eval_code)
    assert "src/llmlab/stages/eval_llm.py" in eval_code
    for plumbing in ("config.py", "io.py", "cli.py", "errors.py", "stages/__init__.py"):
        assert f"src/llmlab/{plumbing}" not in eval_code
    # Every file the closure names exists; imports inside functions count.
    assert "llmlab.eval.backends" in closure("llmlab.stages.eval_llm")
    for s in all_stages():
        assert all((ROOT / f).is_file() for f in code_files(s.name)), s.name


def test_package_data_is_a_dependency_of_the_stages_that_read_it() -> None:
    assert "src/llmlab/chat_template.jinja" in code_files("format_chat")
    assert "src/llmlab/chat_template.jinja" in code_files("train_lora")
    assert "src/llmlab/templates/report.md.j2" in code_files("report")
    declared = {f for s in all_stages() for f in code_files(s.name) if not f.endswith(".py")}
    shipped = {
        str(p.relative_to(ROOT))
        for p in SRC.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert shipped <= declared, f"package data no stage declares: {sorted(shipped - declared)}"


def test_the_readme_recipe_adds_a_stage_with_one_module_and_one_rule(tmp_path: Path) -> None:
    """README "How to add a stage": the module and the rule entry it shows are all it takes."""
    import re

    from tests.test_workflow import ENV, clean_copy

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### How to add a stage", 1)[1]
    module, rule = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    repo = clean_copy(tmp_path)
    (repo / "src/llmlab/stages/label_counts.py").write_text(module)
    with (repo / "rules/eval.smk").open("a") as f:
        f.write("\n\n" + rule)
    env = {**ENV, "PYTHONPATH": str(repo / "src")}
    cli = subprocess.run(
        [sys.executable, "-m", "llmlab", "label-counts", "--help"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 0 and "--counts" in cli.stdout, cli.stderr
    dry = subprocess.run(
        ["snakemake", "-n", "--profile", "profiles/demo", "results/label_counts.json"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "label_counts" in dry.stdout
    assert "python -m llmlab label-counts --preset demo --input data/imdb/val.parquet" in dry.stdout
