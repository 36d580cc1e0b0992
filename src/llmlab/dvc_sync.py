"""Write dvc.yaml from the Snakefile, so the two orchestrators can never drift apart.

    python -m llmlab.dvc_sync          # rewrite dvc.yaml
    python -m llmlab.dvc_sync --check  # exit 1 (with a diff) if dvc.yaml is out of date

Each Snakemake rule becomes a DVC stage with the same command (minus the log redirection),
the same inputs as `deps`, outputs as `outs` / `metrics` / `plots` as the stage module
declares them (`Out(kind=...)`), and as `params` the config keys of the stage's `PARAMS`, plus
`preset` and the preset overlays of those keys. Wildcard rules become `foreach` / `matrix`
stages over the config values their `Wildcard` markers name.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from llmlab.config import PRESETS, read_params_file, resolve
from llmlab.stages import Out, all_stages, stage_names
from llmlab.stages import stage as stage_of
from llmlab.workflow import wildcard_values

HEADER = """\
# GENERATED from the Snakefile by `python -m llmlab.dvc_sync` (make dvc-yaml): do not edit.
# Same stages, commands, inputs, outputs and params as the Snakemake rules; a test fails when
# the two drift. Run: dvc repro | dvc exp run -S preset=demo | dvc metrics show | dvc plots show
"""


def load_rules(snakefile: Path = Path("Snakefile")) -> list[Any]:
    """Parse the workflow with Snakemake's API and return its rules (no DAG, no execution)."""
    from snakemake.api import ConfigSettings, OutputSettings, ResourceSettings, SnakemakeApi

    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(),
            snakefile=snakefile,
        )
        # The parsed rules: Snakemake's API has no public accessor for them; everything read
        # from a rule below (input, output, params, wildcard_names, shellcmd) is public.
        return [rule for rule in workflow_api._workflow.rules if rule.name != "all"]


def _strip_constraints(pattern: str) -> str:
    # Snakemake stores "{model,[a-z]...}" once wildcard_constraints apply.
    return re.sub(r"\{(\w+),[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", r"{\1}", str(pattern))


def _named(items: Any) -> dict[str, list[str]]:
    """A rule's inputs/outputs/params -> {name: [values]} (every entry must be named: the
    names are the stage's parameters)."""
    named = {
        name: [_strip_constraints(str(v)) for v in (value if isinstance(value, list) else [value])]
        for name, value in items.items()
    }
    if sum(map(len, named.values())) != len(items):
        raise SystemExit(f"a rule has an unnamed input or output: {list(items)}")
    return named


def _get(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _dvc_stage(rule: Any, params_file: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    name = rule.name
    if name not in stage_names():
        raise SystemExit(f"rule {name}: no stage module llmlab/stages/{name}.py")
    wildcards = sorted(rule.wildcard_names)
    sources = wildcard_values(name)
    kinds = {p.name: p.marker.kind for p in stage_of(name).ports if isinstance(p.marker, Out)}
    matrix = len(wildcards) > 1 or any(
        not isinstance(_get(params_file, src), Mapping) for src in sources.values()
    )
    counts = {w: _count(params_file, src) for w, src in sources.items()}

    def placeholder(wildcard: str) -> str:
        if matrix:
            return "${item." + wildcard + "}"
        return "${key}"

    def fill(text: str) -> str:
        for w in wildcards:
            text = text.replace("{" + w + "}", placeholder(w))
        return text

    inputs = _named(rule.input)
    outputs = _named(rule.output)
    params = dict(rule.params.items())

    def repl(match: re.Match[str]) -> str:
        kind, _, attr = match.group(1).partition(".")
        if kind == "wildcards":
            return placeholder(attr)
        if kind == "params" and attr == "preset":
            return "${preset}"
        if kind == "params":
            return fill(str(params[attr]))
        table = {"input": inputs, "output": outputs}[kind]
        if attr:
            return " ".join(fill(v) for v in table[attr])
        return " ".join(fill(v) for values in table.values() for v in values)

    cmd = re.sub(r"\s*>\s*\{log\}\s*2>&1\s*$", "", rule.shellcmd.strip())
    cmd = re.sub(r"\{((?:input|output|params|wildcards)(?:\.\w+)?)\}", repl, cmd)
    cmd = " ".join(cmd.split())

    stage: dict[str, Any] = {"cmd": cmd}
    stage["deps"] = [fill(v) for values in inputs.values() for v in values]

    # params: the stage's config keys, the preset, and the preset overlays of those keys.
    items = _wildcard_items(params_file, sources)
    param_keys: list[str] = ["preset"]
    for template in stage_of(name).params:
        param_keys.append(fill(template))
        for preset in PRESETS:
            overlay_key = _overlay_key(params_file, preset, template, items)
            if overlay_key and fill(overlay_key) not in param_keys:
                param_keys.append(fill(overlay_key))
    stage["params"] = param_keys

    outs: list[Any] = []
    metrics: list[Any] = []
    plots: list[Any] = []
    for out_name, values in outputs.items():
        for value in values:
            path = fill(value)
            if kinds.get(out_name) == "metric":
                metrics.append(path)
            elif kinds.get(out_name) == "plot":
                plots.append(path)
            else:
                outs.append(path)
    for key, entries in (("outs", outs), ("metrics", metrics), ("plots", plots)):
        if entries:
            stage[key] = entries

    if wildcards:
        if matrix:
            body: dict[str, Any] = {
                # A count (eval.shards) cannot be interpolated as a list: its values are
                # written out, and eval_llm_gather fails when the file's count differs.
                "matrix": {
                    w: list(range(counts[w])) if counts[w] is not None else "${" + sources[w] + "}"
                    for w in wildcards
                },
                **stage,
            }
        else:
            body = {"foreach": "${" + sources[wildcards[0]] + "}", "do": stage}
        return name, body
    return name, stage


def _count(params_file: Mapping[str, Any], src: str) -> int | None:
    """N when the wildcard ranges over 0 .. N-1 (an integer config value, or its default)."""
    value = _get(params_file, src)
    if value is None:
        value = _get(resolve(params_file).model_dump(mode="json"), src)  # its default
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _wildcard_items(
    params_file: Mapping[str, Any], sources: Mapping[str, str]
) -> list[dict[str, str]]:
    """Every combination of wildcard values (used to check overlay keys exist for all)."""
    combos: list[dict[str, str]] = [{}]
    for wildcard, src in sources.items():
        value = _get(params_file, src)
        count = _count(params_file, src)
        if count is not None:
            keys = list(range(count))
        else:
            keys = list(value) if isinstance(value, Mapping) else list(value or [])
        combos = [{**c, wildcard: str(k)} for c in combos for k in keys]
    return combos


def _overlay_key(
    params_file: Mapping[str, Any], preset: str, template: str, items: Iterable[Mapping[str, str]]
) -> str | None:
    """`presets.<preset>.<key>` if the overlay sets that key, else None.

    DVC fails on a params key missing from the file, and a foreach stage has one key list for
    all its items: when the overlay sets the key for some items only, depend on the deepest
    parent that exists for all of them.
    """
    parts = template.split(".")
    items = list(items) or [{}]

    def present(prefix: str) -> list[bool]:
        return [
            _get(params_file, f"presets.{preset}." + prefix.format(**item)) is not None
            for item in items
        ]

    if not any(present(template)):
        return None
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        if all(present(prefix)):
            return f"presets.{preset}.{prefix}"
    return f"presets.{preset}"


def plot_specs(rules: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """x/y of the JSON plots the stages declare (dvc.yaml's top-level `plots:`)."""
    specs = {}
    by_name = {s.name: s for s in all_stages()}
    for rule in rules:
        outputs = _named(rule.output)
        for port in by_name[rule.name].ports:
            if isinstance(port.marker, Out) and port.marker.plot_x:
                for path in outputs[port.name]:
                    specs[path] = {"x": port.marker.plot_x, "y": list(port.marker.plot_y)}
    return specs


def render(rules: Iterable[Any], params_file: Mapping[str, Any]) -> str:
    rules = list(rules)
    stages = dict(_dvc_stage(rule, params_file) for rule in rules)
    doc: dict[str, Any] = {"stages": stages}
    specs = plot_specs(rules)
    if specs:
        doc["plots"] = [{path: spec} for path, spec in specs.items()]
    body = yaml.safe_dump(doc, sort_keys=False, width=4096, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if dvc.yaml is out of date")
    parser.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    args = parser.parse_args(argv)
    text = render(load_rules(), read_params_file())
    current = args.out.read_text() if args.out.exists() else ""
    if args.check:
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), "dvc.yaml", "from Snakefile"
            )
            sys.stderr.writelines(diff)
            print("dvc.yaml is out of date: run `make dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
