import json
import re

import pytest
import torch
from conftest import tiny_config

from core.checkpoint import load_checkpoint
from core.errors import UserError
from core.models import load_model
from core.train import DivergedError, Trainer, run_training


def run(cfg):
    trainer = Trainer(cfg)
    results = list(trainer.epochs())
    return trainer, results


def test_baseline_two_epochs_writes_loadable_checkpoints(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path, mode="baseline", experiment_name="base")
    run_dir = run_training(Trainer(cfg), log=lambda *_: None)
    best, last = (torch.load(run_dir / name, weights_only=True) for name in ("best.pt", "last.pt"))
    for state in (best, last):
        assert state["config"]["mode"] == "baseline" and state["architecture"]["arch"] == "Unet"
    assert {"model", "optimizer", "scheduler", "torch_rng", "best_model"} <= set(last) and last["epoch"] == 2
    # best.pt is what evaluation and export read: the weights alone, a third of the training state.
    assert best["weights_only"] and "optimizer" not in best and "best_model" not in best
    assert (run_dir / "best.pt").stat().st_size < 0.4 * (run_dir / "last.pt").stat().st_size
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["val_dice"] <= 1 and h["train_loss"] > 0 and h["seconds"] > 0 for h in history)
    report = json.loads((run_dir / "test_metrics.json").read_text())
    assert len(report["test_sets"]) == 5 and report["synthetic"] is True
    model, _ = load_model(run_dir / "best.pt")
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_validation_dice_is_reported_per_source_and_averaged_over_sources_for_a_grouped_split(demo_root, tmp_path):
    import shutil

    root = tmp_path / "two-sources"
    shutil.copytree(demo_root, root)
    for kind in ("images", "masks"):  # every other training image comes from a second source
        for i, path in enumerate(sorted((root / "TrainDataset" / kind).iterdir())):
            if i % 2:
                path.rename(path.with_name(path.name.replace("synthetic-", "clinic-")))
    trainer, results = run(tiny_config(root, tmp_path, epochs=1, val_split="grouped", val_fraction=0.5))
    (result,) = results
    assert set(result.val_dice_by_source) == {"clinic", "synthetic"}
    assert result.val_dice == pytest.approx(sum(result.val_dice_by_source.values()) / 2)
    assert trainer.split["val_sources"] == {"clinic": 4, "synthetic": 4}
    assert trainer.history[0]["val_dice_by_source"] == result.val_dice_by_source


def test_online_distillation_trains_against_a_frozen_teacher(demo_root, tmp_path, teacher_checkpoint):
    cfg = tiny_config(
        demo_root,
        tmp_path,
        mode="distillation",
        teacher_checkpoint=str(teacher_checkpoint),
        alpha=0.5,
        temperature=2.0,
        teacher_logits="online",
    )
    trainer = Trainer(cfg)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    results = list(trainer.epochs())
    assert [r.epoch for r in results] == [1, 2]
    assert not trainer.teacher.training
    assert all(torch.equal(v, trainer.teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert all(not p.requires_grad for p in trainer.teacher.parameters())
    state = load_checkpoint(trainer.save(tmp_path / "kd.pt"))
    assert state["architecture"] == {"arch": "Unet", "encoder": "mobilenet_v2"}


def test_cached_distillation_never_runs_the_teacher_in_the_loop(demo_root, tmp_path, teacher_checkpoint):
    cfg = tiny_config(
        demo_root,
        tmp_path,
        mode="distillation",
        teacher_checkpoint=str(teacher_checkpoint),
        alpha=0.5,
        temperature=2.0,
        cache_dir=str(tmp_path / "cache"),
    )
    trainer = Trainer(cfg)
    assert trainer.teacher is None
    _images, masks, logits = next(iter(trainer.train_loader))
    assert logits.shape == masks.shape and logits.dtype == torch.float32
    assert [r.epoch for r in trainer.epochs()] == [1, 2]
    assert len(list((tmp_path / "cache" / "teacher_logits").glob("*/logits.npy"))) == 1


def test_same_seed_gives_the_same_run(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path, epochs=1)
    a, b = run(cfg)[1][0], run(cfg)[1][0]
    assert a.train_loss == b.train_loss and a.val_dice == b.val_dice
    c = run(cfg.replace(seed=7))[1][0]
    assert c.train_loss != a.train_loss


def test_resume_continues_the_epoch_count_and_matches_an_uninterrupted_run(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path, epochs=3)
    _, straight = run(cfg)
    first = Trainer(cfg)
    next(first.epochs())
    path = first.save(tmp_path / "last.pt")
    resumed = Trainer.resume(path)
    rest = list(resumed.epochs())
    assert [r.epoch for r in rest] == [2, 3]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert rest[-1].train_loss == pytest.approx(straight[-1].train_loss, rel=1e-5)


def test_resume_with_more_epochs_extends_the_run(demo_root, tmp_path):
    trainer, _ = run(tiny_config(demo_root, tmp_path, epochs=1))
    resumed = Trainer.resume(trainer.save(tmp_path / "last.pt"), overrides={"epochs": 2})
    assert [r.epoch for r in resumed.epochs()] == [2]


@pytest.mark.parametrize("best_epoch", [1, 2])
def test_resume_keeps_the_best_weights_whichever_epoch_was_best(demo_root, tmp_path, best_epoch):
    trainer = Trainer(tiny_config(demo_root, tmp_path, epochs=3))
    next(trainer.epochs())
    # Dice is in [0, 1]: 2.0 cannot be beaten, -1.0 always is; this fixes which epoch is the best.
    trainer.best_val_dice = 2.0 if best_epoch == 1 else -1.0
    next(trainer.epochs())
    assert trainer.history[-1]["is_best"] == (best_epoch == 2)
    state = load_checkpoint(trainer.save(tmp_path / "last.pt"))
    # Best weights are stored once when they are the current ones, separately otherwise.
    assert (state["best_model"] is None) == (best_epoch == 2)
    resumed = Trainer.resume(tmp_path / "last.pt")
    assert all(torch.equal(v, resumed.best_model[k]) for k, v in trainer.best_model.items())
    changed = any(
        not torch.equal(v, resumed.model.state_dict()[k])
        for k, v in trainer.best_model.items()
        if v.is_floating_point()
    )
    assert changed == (best_epoch == 1)


def test_resuming_from_best_weights_says_to_use_last_pt(demo_root, tmp_path):
    trainer, _ = run(tiny_config(demo_root, tmp_path, epochs=1))
    with pytest.raises(UserError, match=re.escape("resume from last.pt")):
        Trainer.resume(trainer.save_best(tmp_path / "best.pt"))


def test_nan_loss_stops_training_with_a_clear_error(demo_root, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(demo_root, tmp_path))
    monkeypatch.setattr(trainer, "criterion", lambda logits, masks: logits.sum() * float("nan"))
    with pytest.raises(DivergedError, match="lower learning_rate"):
        next(trainer.epochs())


def test_teacher_checkpoint_of_another_architecture_is_rejected(demo_root, tmp_path):
    student_ckpt = Trainer(tiny_config(demo_root, tmp_path)).save(tmp_path / "student.pt")
    cfg = tiny_config(demo_root, tmp_path, mode="distillation", teacher_checkpoint=str(student_ckpt))
    with pytest.raises(UserError, match="not a teacher"):
        Trainer(cfg)


def test_distillation_without_teacher_checkpoint_says_how_to_get_one(demo_root, tmp_path):
    with pytest.raises(UserError, match="--mode teacher"):
        Trainer(tiny_config(demo_root, tmp_path, mode="distillation"))
