"""The W&B Sweep of a sweep, so that W&B's Sweeps page (parallel coordinates, parameter importance) shows it:
its configuration generated from the search space, its registration, and the wandb.init arguments a run joins it by.

Ray Tune schedules the runs and Optuna's TPE chooses them; W&B only groups them (a local controller that nobody
runs). Checked against wandb 0.31.0 (wandb/sdk/wandb_init.py, wandb/sdk/interface/interface.py, wandb/cli/cli.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from core.config import teacher_only_keys
from core.files import write_file_atomic
from tune.sampling import bounds
from tune.space import Parameter, SearchSpace, all_parameters, parameter_specs
from tune.tracking.network import call_with_timeout, wandb_timeout_s

SWEEP_YAML = "wandb-sweep.yaml"  # in the sweep folder: what `wandb sweep` registers later, offline sweeps included
# W&B's method closest to Optuna's TPE: `bayes` is W&B's sequential model-based search, as TPE is (`random`
# and `grid` say the runs were drawn independently, which they were not). With a local controller that nobody
# runs, W&B never proposes a run with it; it also needs the metric, which every space has.
METHOD = "bayes"


def sweep_config(space: SearchSpace, name: str | None = None) -> dict[str, Any]:
    """The W&B sweep configuration of `space`: one parameter per searched config key (the keys every run's
    config holds), the objective as the metric, and a local controller: W&B must not schedule runs."""
    parameters = {key: parameter_spec(p) for key, p in parameter_specs(space.parameters).items()}
    if space.has_control:
        # Every run's config has `arm`: as a sweep parameter it is an axis of the parallel-coordinates
        # panel, which splits the distillation runs from the control arm's.
        parameters["arm"] = {"values": list(space.arm_trials())}
    return {
        "name": name or space.name,
        "description": description(space),
        "project": space.wandb.project,
        "method": METHOD,
        "metric": {"name": space.objective.metric, "goal": "maximize" if space.objective.maximize else "minimize"},
        "controller": {"type": "local"},
        "parameters": parameters,
    }


def parameter_spec(p: Parameter) -> dict[str, Any]:
    """W&B's spec for one distribution of tune/space.py, with the bounds Optuna samples within."""
    if p.type == "choice":
        return {"values": list(p.values)}
    low, high = bounds(p)
    if p.type == "uniform":
        return {"distribution": "uniform", "min": float(low), "max": float(high)}
    if p.type == "loguniform":
        # `log_uniform_values` takes the bounds themselves; W&B's `log_uniform` takes their natural logs.
        return {"distribution": "log_uniform_values", "min": float(low), "max": float(high)}
    if p.type == "int":
        step = p.step or 1
        if step == 1:
            return {"distribution": "int_uniform", "min": int(low), "max": int(high)}
        # Optuna's grid is low, low+step, ... <= high; W&B's q_uniform rounds to multiples of q from 0 and
        # returns floats, so a stepped int is its exact list of values.
        return {"values": list(range(int(low), int(high) + 1, step))}
    raise ValueError(f"parameter {p.name}: no W&B distribution for type {p.type!r}")


def conditional_notes(space: SearchSpace) -> list[str]:
    """What a W&B sweep configuration cannot say: the parameters only one value of a choice opens, and the
    teacher-only ones the control arm does not search (its runs hold the base values)."""
    notes = [
        f"{sub.name} is searched only when {p.name}={value}"
        for p in all_parameters(space.parameters)
        for value, subs in p.when.items()
        for sub in subs
    ]
    skipped = sorted({p.name for p in all_parameters(space.parameters)} & teacher_only_keys())
    if space.has_control and skipped:
        notes.append(
            f"the baseline arm (no teacher) does not search {', '.join(skipped)}: its runs hold the base values"
        )
    return notes


def description(space: SearchSpace) -> str:
    """The sweep's description on its W&B page: who chose the runs, and what its parameters cannot show."""
    text = (
        f"polyp-kd-tune sweep {space.name}: Optuna TPE chose the configurations and Ray Tune ran them "
        f"(ASHA over {space.asha.max_t} epochs); W&B only groups the runs. Search runs have job_type trial; "
        f"confirmation runs (job_type confirm) retrain chosen configurations over seeds."
    )
    notes = conditional_notes(space)
    if notes:
        text += " What W&B's parameters cannot show: " + "; ".join(notes) + "."
    return text


def register_sweep(
    space: SearchSpace, entity: str | None, project: str | None, name: str | None = None, prior_runs: Sequence[str] = ()
) -> str | None:
    """Register the W&B Sweep (online only: W&B creates sweeps on its server) and return its id; `prior_runs`
    (W&B run ids in `project`) become members, e.g. the runs of a sweep that ran before it was registered.

    Announced, and bounded by $POLYP_KD_TUNE_WANDB_TIMEOUT_S. A failure (no network, no or a wrong API key) is
    one printed line and None, not an error: the Sweep is a
    view of runs that are logged either way, so it does not stop a search; `write_sweep_yaml` keeps what
    registering it later needs. wandb.sweep also sets WANDB_ENTITY and WANDB_PROJECT in this process to the
    sweep's: the trial processes Ray starts inherit them, and a run joins a sweep only in its entity and project."""
    import wandb

    timeout_s = wandb_timeout_s()
    print(f"W&B: registering the W&B Sweep (at most {timeout_s:g} s)", flush=True)
    config = sweep_config(space, name)
    try:
        # wandb.sweep takes no timeout (its API client's is fixed when wandb is imported): bounded here. One
        # that answers later is ignored: its runs are logged either way.
        done, sweep_id = call_with_timeout(
            lambda: wandb.sweep(sweep=config, entity=entity, project=project, prior_runs=list(prior_runs) or None),
            timeout_s,
        )
        if done:
            return sweep_id
        reason = f"W&B did not answer within {timeout_s:g} s"
    except (wandb.errors.Error, OSError) as err:  # CommError (network, HTTP), UsageError/AuthenticationError (key)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(
        f"W&B: the sweep was not registered as a W&B Sweep ({reason}); its runs are logged without one. "
        f"To register it later: see the header of {SWEEP_YAML} in the sweep folder"
    )
    return None


def join_sweep(init_kwargs: dict[str, Any], sweep_id: str | None) -> dict[str, Any]:
    """`wandb.init` keyword arguments that make the run a member of W&B Sweep `sweep_id` (unchanged without one).

    The id goes in the run's settings: wandb records it in the run record (offline runs too), and the
    server adds the run to the sweep when the run is created or synced. Not WANDB_SWEEP_ID: with it in the
    environment, wandb.init ignores the `project`, `entity` and `id` it is given (as under `wandb agent`),
    so a trial's run would leave its project and lose the Ray trial id it is named by."""
    if not sweep_id:
        return dict(init_kwargs)
    settings = init_kwargs.get("settings")
    if settings is None or isinstance(settings, dict):
        # A plain dict: Ray pickles these arguments to its logging actor.
        settings = {**(settings or {}), "sweep_id": sweep_id}
    else:
        settings = settings.model_copy(update={"sweep_id": sweep_id})  # a wandb.Settings
    return {**init_kwargs, "settings": settings}


def write_sweep_yaml(space: SearchSpace, sweep_dir: str | Path, name: str | None = None) -> Path:
    """`<sweep_dir>/wandb-sweep.yaml`: the sweep configuration, with how to register it later in its header."""
    config = sweep_config(space, name)
    header = [
        f"# The W&B Sweep configuration of sweep {config['name']}, generated from its search space by",
        "# polyp-kd-tune (tune/tracking/wandb_sweep.py). Ray Tune and Optuna ran the runs: start no W&B agent",
        "# and no controller for it. To register it later and add runs already synced (`wandb sync`),",
        "# whose run ids end their folder names (wandb/offline-run-<time>-<id>):",
        '#   pip install "wandb[sweeps]"    # `wandb sweep` checks a local-controller sweep with it',
        f"#   wandb sweep -p {config['project']} [-e ENTITY] -R <run id> -R <run id> ... {SWEEP_YAML}",
    ]
    header += [f"# Not expressible here: {note}." for note in conditional_notes(space)]
    text = "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    return write_file_atomic(Path(sweep_dir) / SWEEP_YAML, text)
