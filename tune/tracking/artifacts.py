"""The W&B artifacts a sweep leaves: the exported winner as a model artifact (`tune.best export`), report.html
as a report artifact and the winner's validation gallery as masked images (both for the summary run).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import wandb
import yaml

from core.checkpoint import WEIGHTS_FILENAME
from core.errors import UserError
from core.export import CARD_FILENAME, CONFIG_FILENAME, METRICS_FILENAME, ONNX_FILENAME
from core.quantize import INT8_ONNX_FILENAME
from tune.records import CHARTS_DIRNAME, REPORT_FILE
from tune.tracking.mode import RunMode

if TYPE_CHECKING:
    from tune.report.gallery import Gallery

MODEL_FILES = (
    WEIGHTS_FILENAME,
    ONNX_FILENAME,
    INT8_ONNX_FILENAME,
    CONFIG_FILENAME,
    METRICS_FILENAME,
    CARD_FILENAME,
)  # model.int8.onnx only where the export wrote it
CLASS_LABELS = {0: "background", 1: "polyp"}


def artifact_name(text: str) -> str:
    """`text` as W&B accepts it in an artifact's name or alias (letters, digits, '-', '_', '.')."""
    # W&B caps a name at 128 characters: room is left for the -student / -report suffix.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100] or "sweep"


def model_artifact(export_dir: Path, sweep: str) -> wandb.Artifact:
    """The export folder as `<sweep>-student` (type model): its model card as the description, metrics.json
    and config.yaml as the metadata, every file the export wrote (core/export.py) as its contents."""
    export_dir = Path(export_dir)
    try:
        card = (export_dir / CARD_FILENAME).read_text()
        metrics = json.loads((export_dir / METRICS_FILENAME).read_text())
        config = yaml.safe_load((export_dir / CONFIG_FILENAME).read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise UserError(
            f"{export_dir}: not a complete export ({type(err).__name__}: {err}); write it again "
            f"with `python -m tune.best export`"
        ) from None
    artifact = wandb.Artifact(
        f"{artifact_name(sweep)}-student", type="model", description=card, metadata={**metrics, "config": config}
    )
    for name in MODEL_FILES:
        if (export_dir / name).is_file():
            # Copied to wandb's staging folder: an offline run uploads that copy on `wandb sync`, so a later
            # export into the same folder cannot change what this artifact's digests describe.
            artifact.add_file(str(export_dir / name), name=name)
    return artifact


def log_model_artifact(
    export_dir: Path, sweep: str, project: str, entity: str | None, mode: RunMode, group: str, sweep_dir: Path
) -> str:
    """Log the export as the sweep's model artifact, aliases `best` and the sweep's name, from a short run
    (job_type export) beside the sweep's other runs in <sweep_dir>/wandb/. Returns the run's URL online, its
    folder (what `wandb sync` takes) offline."""
    artifact = model_artifact(export_dir, sweep)
    # dir: wandb writes its runs into <dir>/wandb (records.WANDB_DIRNAME), where the trials' runs are, so the
    # sweep's one `wandb sync <sweep>/wandb/offline-run-*` uploads it too; its id marks its folder as the
    # export's (offline-run-<time>-export-<hex>), as the summary run's does. silent: the export's own line
    # says where the artifact went; wandb's banner would bury it.
    run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        job_type="export",
        name=f"{sweep}-export",
        id=f"export-{uuid.uuid4().hex[:8]}",
        dir=str(Path(sweep_dir).resolve()),
        mode=mode,
        tags=[artifact_name(sweep), "export"],
        config={"sweep": sweep, "export_dir": str(Path(export_dir).resolve())},
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        run.log_artifact(artifact, aliases=["best", artifact_name(sweep)])
        if mode == "offline" or run.url is None:  # no URL: nothing went to the server
            return str(Path(run.settings.sync_dir))
        return run.url
    finally:
        run.finish()


def gallery_images(gallery: Gallery) -> list[wandb.Image]:
    """The winner's best, median and worst validation images with its prediction and the ground truth as
    W&B masks (toggled and compared in W&B's viewer), captioned with their kind and Dice."""
    return [
        wandb.Image(
            case.image,
            caption=f"{case.kind}: {case.stem}, Dice {case.dice:.3f}",
            masks={
                "prediction": {"mask_data": case.prediction, "class_labels": CLASS_LABELS},
                "ground_truth": {"mask_data": case.ground_truth, "class_labels": CLASS_LABELS},
            },
        )
        for case in gallery.cases
    ]


def report_artifact(sweep_dir: Path, sweep: str) -> wandb.Artifact:
    """report.html, with the charts/ folder of PNGs where present, as `<sweep>-report` (type report)."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / REPORT_FILE).is_file():
        raise UserError(
            f"{sweep_dir / REPORT_FILE}: not found; write it with `python -m tune.report --sweep {sweep_dir}`"
        )
    artifact = wandb.Artifact(
        f"{artifact_name(sweep)}-report",
        type="report",
        description=f"report.html of sweep {sweep}: trials, selection, verdict, gallery",
    )
    artifact.add_file(str(sweep_dir / REPORT_FILE), name=REPORT_FILE)
    if (sweep_dir / CHARTS_DIRNAME).is_dir():
        artifact.add_dir(str(sweep_dir / CHARTS_DIRNAME), name=CHARTS_DIRNAME)
    return artifact
