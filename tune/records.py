"""The one place that knows a sweep folder's layout: file names, paths, the driver's lock, and the records
written there (`sweep.json`, `search.json`, `best.json`, `leaderboard.csv`) with their readers.

Everything that reads a sweep (tune.best, tune.report, the W&B summary, export) imports this module, never
the driver that writes it. Paths stored in these files are relative to the sweep folder, so a copied sweep
still reads. No Ray here: a reader of a finished sweep never starts or imports it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import posixpath
import secrets
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError
from core.files import atomic_file, write_file_atomic
from tune.cluster.storage import join
from tune.objective import Objective
from tune.sampling import Sampled, arm_label
from tune.space import SearchSpace, fingerprint, load_space
from tune.statistics import mean_ci95
from tune.sweep.ray_compat.conventions import RESULT_FILE

SPACE_FILE = "space.yaml"  # the resolved space the sweep ran
SWEEP_FILE = "sweep.json"  # name and the base TrainConfig every trial starts from
DATA_FILE = "data.json"  # every file of the data the sweep started on, by size and hash (core/data_fingerprint.py)
SEARCH_FILE = "search.json"  # written when the search stage is complete: resume skips it
BEST_FILE = "best.json"  # the winner, the confirmation and the verdict: the sweep is finished
LEADERBOARD_FILE = "leaderboard.csv"
JOURNAL_FILE = "optuna.journal"  # the Optuna study (optuna-dashboard opens it)
REPORT_FILE = "report.html"
LATENCY_FILE = "latency.json"  # a deploy target's measured latency of each student backbone
RAY_LOG_FILE = "ray.log"  # everything Ray printed while the sweep ran (tune/sweep/console.py)
TEST_PER_IMAGE_FILE = "test_per_image.csv"  # every verdict checkpoint's Dice and IoU on every test image
CHARTS_DIRNAME = "charts"  # every chart of report.html as a PNG (W&B's summary run logs them)
CURVES_PNG = f"{CHARTS_DIRNAME}/curves.png"
PARALLEL_PNG = f"{CHARTS_DIRNAME}/parallel_coordinates.png"
TRIALS_DIRNAME = "trials"  # Ray's experiment of the search (the main arm)
CONTROL_DIRNAME = "control"  # Ray's experiment of the control arm's search
CONFIRM_DIRNAME = "confirm"  # Ray's experiment of the selection runs
VERDICT_DIRNAME = "verdict"  # Ray's experiment of the verdict runs (fresh seeds)
TEACHER_DIRNAME = "teacher"
WANDB_DIRNAME = "wandb"
EXPORT_DIRNAME = "export"
CHECKPOINT_FILE = "trainer.pt"  # a trial checkpoint's trainer state
EPOCH_FILE = "epoch.json"  # beside trainer.pt: which epoch it holds, readable without loading it
# What the end of a sweep copies to shared storage (a cluster's driver writes them on its head node).
SHARED_OUTPUTS = (
    SPACE_FILE,
    SWEEP_FILE,
    DATA_FILE,
    LEADERBOARD_FILE,
    BEST_FILE,
    TEST_PER_IMAGE_FILE,
    CHARTS_DIRNAME,
    JOURNAL_FILE,
    REPORT_FILE,
    WANDB_DIRNAME,
)
# missing: its folder is gone; infeasible: over the deploy target's latency budget, never trained
ENDS = ("finished", "stopped by ASHA", "interrupted", "errored", "diverged", "missing", "infeasible")


@dataclass
class SweepPaths:
    """Where a sweep's files live: `sweep_dir` on this machine, `shared` where every node reaches."""

    sweep_dir: Path
    shared: str
    remote: bool = False

    @classmethod
    def local(cls, folder: str | Path) -> SweepPaths:
        return cls(Path(folder), str(folder), remote=False)

    @property
    def trials(self) -> str:
        return join(self.shared, TRIALS_DIRNAME)

    @property
    def confirm(self) -> str:
        return join(self.shared, CONFIRM_DIRNAME)

    @property
    def verdict(self) -> str:
        return join(self.shared, VERDICT_DIRNAME)

    def search_experiment(self, arm: str) -> str:
        """Where Ray keeps an arm's search: each arm is a Tuner of its own (its own sampler and ASHA)."""
        return join(self.shared, TRIALS_DIRNAME if arm == "kd" else CONTROL_DIRNAME)


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep name at a time: an exclusive lock beside the sweep folder, taken before anything
    is written. The kernel drops it when its process dies, so a killed driver never blocks --resume."""
    path = sweep_dir.parent / f".{sweep_dir.name}.lock"
    try:
        sweep_dir.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - opened outside `with` so only its OSError becomes a UserError
    except OSError as err:
        raise UserError(
            f"{sweep_dir.parent}: cannot write the sweep there ({(err.strerror or str(err)).lower()}); "
            f"choose a writable --storage"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(
                f"{sweep_dir}: sweep is running in {holder}; wait for it, or stop it "
                f"(Ctrl-C) and continue with --resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def relative(path: str | None, sweep_dir: Path | None) -> str:
    """`path` relative to the sweep folder when it lies inside it; unchanged otherwise (e.g. a URI)."""
    if not path:
        return ""
    if sweep_dir is not None and "://" not in path:
        try:
            return Path(path).resolve().relative_to(sweep_dir.resolve()).as_posix()
        except ValueError:
            pass
    return path


def resolve(path: str, sweep_dir: Path) -> str:
    """Inverse of `relative`: a path recorded in the sweep folder, made usable from here. A relative path must
    stay inside the sweep folder; an absolute path or a URI must lie inside the sweep folder or the storage it
    ran in (sweep.json's `storage`: where a sweep on shared storage records its trials). Anything else is one
    UserError, never followed."""
    if not path:
        return path
    if "://" not in path and not posixpath.isabs(path):
        full = os.path.normpath(os.path.join(sweep_dir, path))
        if _inside(full, str(sweep_dir)):
            return full
    elif _inside(path, str(sweep_dir)) or any(_inside(path, root) for root in _storage_of(sweep_dir)):
        return path
    raise UserError(
        f"{sweep_dir}: a record names {path!r}, outside the sweep folder and its storage; a sweep's records "
        "only point inside them: restore the record from the sweep's own output, or run the sweep again"
    )


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies in it, after `..` and `.` are taken out (URIs compared as text)."""
    if "://" in path or "://" in folder:
        scheme, _, rest = path.partition("://")
        folder_scheme, _, folder_rest = folder.partition("://")
        return scheme == folder_scheme and _inside("/" + rest.lstrip("/"), "/" + folder_rest.lstrip("/"))
    full, root = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(folder))
    return os.path.commonpath([full, root]) == root


def _storage_of(sweep_dir: Path) -> list[str]:
    """Where the sweep's shared files are (sweep.json's `storage`) as a URI, and as a local path too when it
    is a file:// URI (Ray records trials there by their path)."""
    storage = _earlier_record(sweep_dir).get("storage")
    if not isinstance(storage, str) or not storage:
        return []
    return [storage, storage.removeprefix("file://")] if storage.startswith("file://") else [storage]


def write_json(data: dict[str, Any], path: Path) -> None:
    write_file_atomic(path, json.dumps(data, indent=2, default=_json_default))


def read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON record of the sweep folder; a missing or unreadable one is one UserError naming it and `fix`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found; {fix}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object; {fix}")
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _none_to_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


# --- trials -------------------------------------------------------------------------------------------


@dataclass
class TrialState:
    """A trial as Ray's experiment state on disk records it (not as `Tuner.fit()` returns it)."""

    trial_id: str
    status: str  # PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    config: dict[str, Any]  # what Ray passed the trial: a search trial's sample, or a confirmation run
    last_result: dict[str, Any]
    path: str | None
    checkpoint_path: str | None
    error: str | None
    history: list[dict[str, Any]]  # one entry per reported result: epoch and validation metrics


class _OfASample:
    """A record of one sampled configuration: its arm and its parameters by config key."""

    sampled: Sampled

    @property
    def arm(self) -> str:
        return self.sampled.arm

    @property
    def params(self) -> dict[str, Any]:
        return self.sampled.params


@dataclass
class TrialRow(_OfASample):
    """One search trial as the leaderboard shows it."""

    trial_id: str
    sampled: Sampled  # what Optuna sampled (arm included): what selection retrains
    end: str  # one of ENDS
    epochs: int
    objective: float  # the space's objective metric (NaN: never reported)
    best_val_dice: float
    best_val_iou: float
    best_epoch: int
    last_val_dice: float
    node_id: str = ""
    gpus_assigned: float = 0.0
    device: str = ""
    error: str = ""
    checkpoint: str = ""  # relative to the sweep folder where local
    trial_dir: str = ""
    rank: int = 0
    curve: dict[int, float] = field(default_factory=dict)  # the objective at each epoch it reported
    latency_ms: float | None = None  # its student's latency at the space's deploy target (None: no target)

    def value_at(self, epoch: int) -> float:
        """The objective after `epoch` epochs (NaN if the trial did not get there)."""
        return self.curve.get(epoch, math.nan)

    @property
    def usable(self) -> bool:
        return self.end in ("finished", "stopped by ASHA") and not math.isnan(self.objective)

    def to_json(self) -> dict[str, Any]:
        out = {k: _nan_to_none(v) for k, v in asdict(self).items() if k not in ("sampled", "curve")}
        out["curve"] = {str(k): _nan_to_none(v) for k, v in self.curve.items()}
        return {**out, "arm": self.arm, "params": self.params, "sampled": self.sampled.values}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TrialRow:
        values = {k: v for k, v in record.items() if k not in ("arm", "params", "sampled")}
        for key in ("objective", "best_val_dice", "best_val_iou", "last_val_dice"):
            values[key] = _none_to_nan(values[key])
        values["curve"] = {int(k): _none_to_nan(v) for k, v in (values.get("curve") or {}).items()}
        return cls(sampled=Sampled(record["arm"], record["sampled"]), **values)


def read_trial_curve(sweep_dir: Path, trial_dir: str, key: str = "val_dice") -> list[tuple[int, float]]:
    """(epoch, `key`) of one Ray trial from its result file; the last report of an epoch wins (a trial
    restored from a checkpoint reports its epochs again). Empty where the trial lives in remote storage or its
    folder is gone."""
    return read_trial_curves(sweep_dir, trial_dir, [key]).get(key, [])


def read_trial_curves(
    sweep_dir: Path, trial_dir: str, keys: list[str] | None = None
) -> dict[str, list[tuple[int, float]]]:
    """Like read_trial_curve, for several metrics at once: `keys`, or else val_dice and every per-source
    val_dice/<source>."""
    path = Path(resolve(trial_dir, sweep_dir)) / RESULT_FILE
    if not trial_dir or "://" in trial_dir or not path.is_file():
        return {}
    by_key: dict[str, dict[int, float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            result = json.loads(line) if line.strip() else {}
        except ValueError:
            continue  # a line cut by a full disk or a kill: the epochs before it still count
        if "epoch" not in result:
            continue
        for key, value in result.items():
            wanted = key in keys if keys is not None else key == "val_dice" or key.startswith("val_dice/")
            if wanted and isinstance(value, (int, float)):
                by_key.setdefault(key, {})[int(result["epoch"])] = float(value)
    return {key: sorted(values.items()) for key, values in by_key.items()}


def write_search(rows: list[TrialRow], sweep_dir: Path) -> None:
    write_json({"complete": True, "rows": [r.to_json() for r in rows]}, sweep_dir / SEARCH_FILE)


def read_search(sweep_dir: Path) -> list[TrialRow]:
    path = sweep_dir / SEARCH_FILE
    data = read_json(path, "delete it and run the sweep again with --resume (the search's trials are kept)")
    try:
        return [TrialRow.from_json(r) for r in data["rows"]]
    except (KeyError, TypeError) as err:
        raise UserError(f"{path}: a row lacks {err}; delete it and resume with --resume to rebuild it") from None


CSV_COLUMNS = [
    "rank",
    "trial_id",
    "arm",
    "end",
    "epochs",
    "objective",
    "best_val_dice",
    "best_val_iou",
    "best_epoch",
    "last_val_dice",
    "latency_ms",
    "node_id",
    "gpus_assigned",
    "device",
]


def write_leaderboard(rows: list[TrialRow], path: Path, mode: str = "distillation") -> None:
    """leaderboard.csv: one row per trial, best first; `mode` (the space's) labels the arms (`arm_label`)."""
    params = sorted({k for row in rows for k in row.params})
    with atomic_file(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS + [f"param:{p}" for p in params] + ["error", "checkpoint", "trial_dir"])
        for row in rows:
            writer.writerow(
                [arm_label(row.arm, mode) if c == "arm" else getattr(row, c) for c in CSV_COLUMNS]
                + [row.params.get(p, "") for p in params]
                + [row.error, row.checkpoint, row.trial_dir]
            )


def read_leaderboard(sweep_dir: Path) -> list[dict[str, Any]]:
    """leaderboard.csv as dicts, numbers parsed (what `tune.best show` prints)."""
    path = sweep_dir / LEADERBOARD_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found; rebuild it with `{resume_command(sweep_dir)}`")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for number, row in enumerate(rows, 2):
        if None in row or None in row.values():  # more or fewer cells than the header names
            raise UserError(f"{path}: line {number} is cut or malformed; rebuild it with `{resume_command(sweep_dir)}`")
    return [{key: _parse_cell(value) for key, value in row.items()} for row in rows]


def _parse_cell(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


# --- confirmation -------------------------------------------------------------------------------------


@dataclass
class Candidate(_OfASample):
    """A configuration chosen from the search for confirmation."""

    name: str  # e.g. kd-1 (best KD trial of the search), baseline-1
    trial_id: str  # the search trial it comes from
    sampled: Sampled  # exactly what Optuna sampled, arm included
    search_value: float  # its objective value in the search (possibly at a partial budget)
    search_epochs: int
    front: bool = False  # its student backbone's entry on the Dice–latency front (chosen on search values)
    distilled: bool = True  # False in a space that does not distil (`mode: baseline` or `teacher`)

    @property
    def teacher(self) -> bool:
        """Whether its runs learn from the sweep's teacher (the main arm of a distillation space)."""
        return self.arm == "kd" and self.distilled


@dataclass
class Confirmed:
    """One candidate after its seed runs."""

    candidate: Candidate
    seeds: list[int]
    values: list[float]  # the objective per seed, in `seeds` order
    val_dice: list[float]  # best validation Dice per seed
    checkpoints: list[str]  # per seed (relative to the sweep folder where local)
    trial_ids: list[str]
    mean: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)

    def __post_init__(self) -> None:
        self.mean, self.ci95 = mean_ci95(self.values)

    def best_seed_index(self, objective: Objective) -> int:
        return objective.best(self.values)

    @property
    def failed(self) -> int:
        """Seed runs that failed or diverged (NaN)."""
        return sum(math.isnan(v) for v in self.values)

    def ranking_mean(self, objective: Objective) -> float:
        """The mean it is ranked by: a failed or diverged seed counts as the worst value the objective allows,
        so a configuration never gains from the seeds it lost (NaN when every seed failed)."""
        if not self.values or self.failed == len(self.values):
            return math.nan
        return sum(objective.worst if math.isnan(v) else v for v in self.values) / len(self.values)

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "name": c.name,
            "trial": c.trial_id,
            "arm": c.arm,
            "params": c.params,
            "sampled": c.sampled.values,
            "search_value": c.search_value,
            "search_epochs": c.search_epochs,
            "teacher": c.teacher,
            "front": c.front,
            "seeds": self.seeds,
            "values": self.values,
            "val_dice": self.val_dice,
            "mean": self.mean,
            "ci95": list(self.ci95),
            "checkpoints": self.checkpoints,
            "trial_ids": self.trial_ids,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Confirmed:
        """A `Confirmed` read back from best.json's `confirmation` list."""
        sampled = Sampled(record["arm"], record.get("sampled", record["params"]))
        candidate = Candidate(
            record["name"],
            record["trial"],
            sampled,
            record["search_value"],
            record["search_epochs"],
            bool(record.get("front", False)),
            bool(record.get("teacher", True)),  # only a main-arm ("kd") candidate's matters
        )
        return cls(
            candidate,
            record["seeds"],
            [_none_to_nan(v) for v in record["values"]],
            [_none_to_nan(v) for v in record["val_dice"]],
            record["checkpoints"],
            record["trial_ids"],
        )


def rank_confirmed(confirmed: list[Confirmed], objective: Objective) -> list[Confirmed]:
    """Best first by the mean with failed seeds at the objective's worst value (`Confirmed.ranking_mean`);
    a tie goes to the baseline arm (distillation must beat it, not match it); every seed failed: last."""
    return objective.ranked(confirmed, lambda c: c.ranking_mean(objective), tie=lambda c: c.candidate.teacher)


# --- the finished sweep -------------------------------------------------------------------------------


def read_latencies(sweep_dir: Path) -> dict[str, Any] | None:
    """latency.json (a sweep with a deploy target): {"deploy": target, "students": {backbone: latency}}."""
    path = sweep_dir / LATENCY_FILE
    return read_json(path, "it is written when the sweep starts") if path.is_file() else None


def logged_wandb_runs(sweep_dir: Path) -> dict[str, str]:
    """The W&B runs this sweep wrote on this machine: run id -> "online" or "offline" (wandb's own folders,
    `wandb/run-<time>-<id>` and `wandb/offline-run-<time>-<id>`; a trial's run id is its Ray trial id)."""
    runs = {}
    for folder in sorted((sweep_dir / WANDB_DIRNAME).glob("*run-*-*")):
        if folder.is_dir():
            runs[folder.name.rsplit("-", 1)[-1]] = "offline" if folder.name.startswith("offline-") else "online"
    return runs


def write_sweep_record(
    sweep_dir: Path,
    name: str,
    fingerprint: str,
    storage: str,
    base: dict[str, Any] | None = None,
    wandb_sweep_id: str | None = None,
) -> Path:
    """sweep.json: the sweep's name, the fingerprint of the space it is bound to (tune/space.fingerprint), the
    storage it runs in (the folder or URI its records may point into: `resolve`), once prepared the base
    TrainConfig every trial starts from, and the id of the W&B Sweep its runs join (kept from the record
    already there: a resumed sweep goes on in the same W&B Sweep)."""
    path = sweep_dir / SWEEP_FILE
    earlier = _earlier_record(sweep_dir)
    # uid: this sweep among the sweeps of the same name (the W&B summary run's id is made of it)
    record: dict[str, Any] = {
        "name": name,
        "uid": earlier.get("uid") or secrets.token_hex(4),
        "fingerprint": fingerprint,
        "storage": storage,
    }
    if base is not None:
        record["base"] = base
    wandb_sweep_id = wandb_sweep_id or earlier.get("wandb_sweep_id")
    if wandb_sweep_id:
        record["wandb_sweep_id"] = wandb_sweep_id
    write_json(record, path)
    return path


def record_wandb_sweep(sweep_dir: Path, sweep_id: str) -> Path:
    """Add the id of the W&B Sweep this sweep registered to its sweep.json."""
    record = {**_earlier_record(sweep_dir), "wandb_sweep_id": sweep_id}
    write_json(record, sweep_dir / SWEEP_FILE)
    return sweep_dir / SWEEP_FILE


def _earlier_record(sweep_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((sweep_dir / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_sweep_record(sweep_dir: Path) -> dict[str, Any]:
    return read_json(sweep_dir / SWEEP_FILE, "it is written when a sweep starts; run the sweep under a new --name")


def read_bound_space(sweep_dir: Path) -> dict[str, Any]:
    """The space a sweep ran (its space.yaml), checked against the fingerprint sweep.json recorded."""
    path = sweep_dir / SPACE_FILE
    try:
        saved = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found, so the space this sweep ran is unknown; run it as a new sweep with --name NEW"
        ) from None
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}); run it as a new sweep with --name NEW") from None
    try:
        recorded = read_sweep_record(sweep_dir).get("fingerprint")
    except UserError as err:  # space.yaml still says what ran; the resume writes sweep.json again
        print(f"{err.args[0].split(';')[0]}; it is written again from {SPACE_FILE}")
        recorded = None
    if not isinstance(saved, dict) or (recorded and recorded != fingerprint(saved)):
        raise UserError(
            f"{path}: changed since the sweep started (it no longer matches sweep.json's "
            f"fingerprint); put it back, or run it as a new sweep with --name NEW"
        )
    return saved


def read_sweep_base(path: Path) -> dict[str, Any]:
    """The base TrainConfig values a sweep's trials were built from (sweep.json)."""
    record = read_json(path, "it is written by the sweep's prepare stage; start the sweep under a new --name")
    if not isinstance(record.get("base"), dict):
        raise UserError(f"{path}: no 'base' mapping; start the sweep under a new --name")
    return record["base"]


def read_best(sweep_dir: Path) -> dict[str, Any]:
    return read_json(sweep_dir / BEST_FILE, f"rebuild it with `{resume_command(sweep_dir)}`")


def resume_command(sweep_dir: Path) -> str:
    """The command that continues (or finishes again) the sweep in `sweep_dir`, wherever it lies now."""
    return (
        f"python -m tune.search --space {sweep_dir / SPACE_FILE} --name {sweep_dir.name} "
        f"--storage {sweep_dir.parent} --resume"
    )


def find_sweep(sweep: str | None, storage: Path = Path("results")) -> Path:
    """The named sweep folder, or the newest one under results/ that has a best.json."""
    if sweep:
        path = Path(sweep)
        if not path.is_dir() and (storage / sweep).is_dir():
            path = storage / sweep
        if not (path / BEST_FILE).is_file():
            raise UserError(
                f"{path}: no best.json there; pass a finished sweep folder "
                f"(results/<sweep>), or finish it with `python -m tune.search --resume`"
            )
        return path
    finished = sorted(storage.glob(f"*/{BEST_FILE}"), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise UserError(f"{storage}: no finished sweep found; run `python -m tune.search --space demo.yaml`")
    return finished[-1].parent


def require_finished(folder: Path) -> None:
    for name in (SPACE_FILE, SWEEP_FILE, SEARCH_FILE, BEST_FILE):
        if not (folder / name).is_file():
            raise UserError(
                f"{folder / name}: not found; pass a finished sweep folder (results/<sweep>), or "
                f"finish the sweep with `python -m tune.search --space <space> --resume`"
            )


@dataclass
class FinishedSweep:
    """A finished sweep folder, read back: the resolved space, the trials' base config, the search's rows
    and best.json."""

    folder: Path
    space: SearchSpace
    base: dict[str, Any]
    rows: list[TrialRow]
    best: dict[str, Any]

    @property
    def objective(self) -> Objective:
        return self.space.objective


def read_finished(folder: str | Path) -> FinishedSweep:
    folder = Path(folder)
    require_finished(folder)
    return FinishedSweep(
        folder,
        load_space(folder / SPACE_FILE),
        read_sweep_base(folder / SWEEP_FILE),
        read_search(folder),
        read_best(folder),
    )
