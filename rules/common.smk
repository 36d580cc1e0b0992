# Config, preset and the per-stage dependencies shared by every rule.

from snakemake.exceptions import WorkflowError

from llmlab.config import ConfigError, read_params_file, resolve
from llmlab.stages import shell_command
from llmlab.workflow import stage_code, stage_params


def _load_config(config):
    # Stages re-read params.yaml themselves (as under DVC), so the only override that can be
    # honoured is the preset, which every command receives as --preset.
    on_disk = read_params_file("params.yaml")
    changed = sorted(
        key
        for key in set(config) | set(on_disk)
        if key != "preset" and config.get(key) != on_disk.get(key)
    )
    if changed:
        raise WorkflowError(
            f"--config/--configfile may only set `preset` (got {', '.join(changed)}); "
            "edit params.yaml instead, so Snakemake and DVC run the same experiment"
        )
    try:
        return resolve(config)
    except ConfigError as err:
        raise WorkflowError(f"params.yaml: {err}") from None


CFG = _load_config(config)
PRESET = CFG.preset


wildcard_constraints:
    model="[a-z][a-z0-9_]*",
    variant="[a-z][a-z0-9_]*",
    shots=r"\d+",
    shard=r"\d+",


def config_of(stage):
    """The resolved config a stage reads: a change reruns the stage (params rerun trigger)."""
    return lambda wildcards: stage_params(stage, CFG, wildcards)


def stage_shell(stage):
    """The rule's command, rendered from the stage module's run() signature (llmlab.stages):
    the rule names its inputs, outputs, params and wildcards like the parameters."""
    return shell_command(stage)


def model_dir(key):
    return f"models/pretrained/{key}"


def shard_files(pattern):
    """The eval.shards files of one (model, shots) that eval_llm_gather joins."""
    return expand(pattern, shard=range(CFG.eval.shards))
