"""The workflow's stages, one module each: the single declaration of a stage's interface.

A stage module `llmlab/stages/<name>.py` has
- a docstring whose first line is the stage's help text,
- `PARAMS`: the config key paths it reads (they may hold its wildcards, e.g.
  `sft.variants.{variant}.filter`); a change of their resolved values reruns the stage under
  Snakemake and DVC,
- `ONLINE = True` if it may reach the network (downloads; every other stage runs with the hub
  offline, as on a compute node),
- `run(cfg, *, ...)`, whose keyword parameters, annotated with `In`, `Out`, `Wildcard` or
  `Option`, ARE the interface: the CLI (`python -m llmlab <name>`), the rule's shell command
  (`stage_shell` in rules/common.smk) and dvc.yaml are all built from them, and a test checks
  that each rule names exactly these inputs, outputs and wildcards.

Stage modules import their library code (eval/, sft_data/, ...) inside `run`: building the
CLI imports every stage module, and neither `--help` nor a data stage should pay for torch.
Library code never imports a stage.

A stage's code dependencies are computed, not listed: the import closure of its module inside
llmlab (imports in function bodies included), without the plumbing every stage shares
(`PLUMBING`), plus the package data files those modules declare in `PACKAGE_DATA`.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

SRC = Path(__file__).resolve().parents[1]  # src/llmlab
PACKAGE = "llmlab"
# Shared by every stage; a change there should not invalidate hours of GPU results.
PLUMBING = frozenset(
    {
        "llmlab",
        "llmlab.cli",
        "llmlab.config",
        "llmlab.errors",
        "llmlab.io",
        "llmlab.sources",
        "llmlab.stages",
        "llmlab.__main__",
    }
)

OutKind = Literal["out", "metric", "plot"]


# --------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class In:
    """An input file or folder (a list of them when annotated `list[Path]`)."""

    help: str


@dataclass(frozen=True)
class Out:
    """An output. `kind`: `metric` (small JSON of numbers: `dvc metrics show`), `plot` (a
    figure or a per-step log: `dvc plots show`) or `out`."""

    help: str
    kind: OutKind = "out"
    # For JSON plots: the x and y keys DVC plots (dvc.yaml's top-level `plots:`).
    plot_x: str | None = None
    plot_y: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wildcard:
    """A rule wildcard; `values` is the config key whose keys (a mapping) or items (a list)
    it ranges over, or 0 .. N-1 for a count N (DVC's foreach/matrix)."""

    help: str
    values: str


@dataclass(frozen=True)
class Option:
    """A path passed through the rule's params, not tracked as an input or output (a
    checkpoint folder that must survive reruns, an optional folder read if present)."""

    help: str


Marker = In | Out | Wildcard | Option
ROLES: dict[type, str] = {In: "input", Out: "output", Wildcard: "wildcards", Option: "params"}


# --------------------------------------------------------------------------- description


@dataclass(frozen=True)
class Port:
    """One keyword parameter of a stage's `run`."""

    name: str  # the parameter, the rule's input/output/params/wildcards name, the CLI flag
    marker: Marker
    type: Callable[[str], Any]  # Path, str or int: how the CLI parses a value
    many: bool  # a list of values
    required: bool

    @property
    def role(self) -> str:
        return ROLES[type(self.marker)]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Stage:
    name: str  # snake_case: the rule name
    module: ModuleType
    help: str
    params: tuple[str, ...]
    online: bool
    ports: tuple[Port, ...]

    @property
    def command(self) -> str:
        """The CLI subcommand: `download_imdb` -> `download-imdb`."""
        return self.name.replace("_", "-")

    @property
    def run(self) -> Callable[..., None]:
        return self.module.run

    def by_role(self, role: str) -> list[Port]:
        return [p for p in self.ports if p.role == role]


def _port(name: str, hint: Any, default: Any) -> Port:
    if typing.get_origin(hint) is not typing.Annotated:
        raise TypeError(f"parameter {name!r} is not annotated with In/Out/Wildcard/Option")
    base, *extras = typing.get_args(hint)
    markers = [m for m in extras if isinstance(m, In | Out | Wildcard | Option)]
    if len(markers) != 1:
        raise TypeError(f"parameter {name!r} needs exactly one In/Out/Wildcard/Option marker")
    many = typing.get_origin(base) is list
    if many:
        (base,) = typing.get_args(base)
    optional = type(None) in typing.get_args(base)
    if optional:
        base = next(a for a in typing.get_args(base) if a is not type(None))
    required = default is inspect.Parameter.empty
    return Port(name, markers[0], base, many, required)


def describe(module: ModuleType) -> Stage:
    """The stage description of a stage module (raises TypeError naming what is missing)."""
    name = module.__name__.rpartition(".")[2]
    run = getattr(module, "run", None)
    if run is None or not module.__doc__:
        raise TypeError(f"stage module {module.__name__} needs a docstring and a run() function")
    hints = typing.get_type_hints(run, include_extras=True)
    ports = []
    for pname, param in list(inspect.signature(run).parameters.items())[1:]:
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{module.__name__}.run: {pname!r} must be keyword-only")
        ports.append(_port(pname, hints[pname], param.default))
    return Stage(
        name=name,
        module=module,
        help=module.__doc__.strip().splitlines()[0],
        params=tuple(getattr(module, "PARAMS", ())),
        online=bool(getattr(module, "ONLINE", False)),
        ports=tuple(ports),
    )


def stage_names() -> list[str]:
    """Every stage: the modules of this package (the rules give the DAG's order)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


@functools.cache
def stage(name: str) -> Stage:
    if name not in stage_names():
        raise KeyError(f"no stage module llmlab/stages/{name}.py")
    return describe(importlib.import_module(f"{__name__}.{name}"))


def all_stages() -> list[Stage]:
    return [stage(name) for name in stage_names()]


# --------------------------------------------------------------------------- code dependencies


def _module_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    if not parts:  # the package itself
        return SRC / "__init__.py"
    rel = Path(*parts)
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """llmlab modules `path` imports anywhere (function bodies too), as dotted names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from llmlab.x import y` may import the submodule llmlab.x.y.
            found.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == PACKAGE and _module_file(m)}


def _package_data(path: Path) -> list[Path]:
    """Files a module declares it reads in `PACKAGE_DATA` (paths relative to src/llmlab)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "PACKAGE_DATA" for t in targets):
            return [SRC / rel for rel in ast.literal_eval(node.value)]
    return []


def closure(module: str) -> set[str]:
    """`module` and every llmlab module it imports, directly or not, plumbing excluded.

    Importing `llmlab.a.b` runs `llmlab/a/__init__.py` too: parent packages are included.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))
        path = _module_file(current)
        if path is not None:
            todo.extend(_imports(path, current) - seen)
    return {m for m in seen if m not in PLUMBING and _module_file(m)}


def code_files(name: str, root: Path | None = None) -> list[str]:
    """The source files a stage's results depend on, as paths relative to `root` (default:
    the repository, i.e. `src/llmlab/...`), sorted."""
    root = root or SRC.parents[1]
    files: set[Path] = set()
    for module in closure(f"{__name__}.{name}"):
        path = _module_file(module)
        files.add(path)
        files.update(_package_data(path))
    return sorted(str(p.relative_to(root)) for p in files)


def shell_command(name: str) -> str:
    """The rule's shell command, rendered from the stage's `run` signature: one flag per
    parameter, referring to the rule's input/output/params/wildcards of the same name, and
    the log redirection every rule uses."""
    s = stage(name)
    flags = " ".join(f"{p.flag} {{{p.role}.{p.name}}}" for p in s.ports)
    return f"python -m llmlab {s.command} --preset {{params.preset}} {flags} > {{log}} 2>&1"
