"""Finding a trial's newest complete checkpoint: what a resumed sweep moves into the place of a checkpoint
Ray recorded but had already deleted (a driver killed between the two; see tune/recovery.py)."""

import json

import pyarrow.fs as pafs
from conftest import tiny_config

from core.train import Trainer
from tune.cluster.recovery import checkpoint_epoch, newest_checkpoint_beside
from tune.records import CHECKPOINT_FILE, EPOCH_FILE

FS = pafs.LocalFileSystem()


def write_checkpoints(trial_dir, trainer, names):
    for name in names:
        next(trainer.epochs())
        folder = trial_dir / name
        trainer.save(folder / CHECKPOINT_FILE)
        (folder / EPOCH_FILE).write_text(json.dumps({"epoch": trainer.epoch}))


def test_newest_means_highest_epoch_not_highest_name(demo_root, tmp_path):
    # After one repair Ray numbers on from its own count, so names and epochs can disagree.
    write_checkpoints(
        tmp_path,
        Trainer(tiny_config(demo_root, tmp_path, epochs=3)),
        ["checkpoint_000007", "checkpoint_000002", "checkpoint_000003"],
    )
    assert newest_checkpoint_beside(FS, str(tmp_path / "checkpoint_000000")) == str(tmp_path / "checkpoint_000003")
    assert [checkpoint_epoch(FS, str(tmp_path / n)) for n in ("checkpoint_000007", "checkpoint_000003")] == [1, 3]


def test_incomplete_checkpoints_are_never_chosen(demo_root, tmp_path):
    write_checkpoints(
        tmp_path,
        Trainer(tiny_config(demo_root, tmp_path, epochs=3)),
        ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"],
    )
    (tmp_path / "checkpoint_000002" / EPOCH_FILE).unlink()  # cut short before its epoch.json
    (tmp_path / "checkpoint_000001" / CHECKPOINT_FILE).write_bytes(b"")  # a deletion that stopped midway
    assert checkpoint_epoch(FS, str(tmp_path / "checkpoint_000002")) is None
    assert newest_checkpoint_beside(FS, str(tmp_path / "checkpoint_000005")) == str(tmp_path / "checkpoint_000000")
    assert newest_checkpoint_beside(FS, str(tmp_path / "checkpoint_000000")) is None
    assert newest_checkpoint_beside(FS, str(tmp_path / "missing" / "checkpoint_000000")) is None


def test_a_stage_stopped_before_rays_first_snapshot_starts_over_instead_of_restoring(tmp_path):
    from tune.sweep.state_files import restorable

    experiment = tmp_path / "trials"
    assert not restorable(str(experiment))  # nothing there
    experiment.mkdir()
    (experiment / "tuner.pkl").write_bytes(b"\x80\x05N.")  # what Ray writes as a Tuner starts
    assert not restorable(str(experiment))  # stopped before its first snapshot: nothing recorded to resume
    (experiment / "experiment_state-2026-12-06_05-17-18.json").write_text("{}")
    assert restorable(str(experiment))
