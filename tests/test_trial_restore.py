"""A restarted trial resumes from Ray's recorded checkpoint, or from its newest one that survives when
Ray's experiment state is older than its checkpoints (a driver killed between the two)."""
import json

from conftest import tiny_config
from ray import tune

from core.train import Trainer
from tune.trainable import CHECKPOINT_FILE, EPOCH_FILE, load_trial_state


def write_checkpoints(trial_dir, trainer, epochs, truncated=()):
    for index in range(1, epochs + 1):
        next(trainer.epochs())
        folder = trial_dir / f"checkpoint_{index - 1:06d}"
        path = trainer.save(folder / CHECKPOINT_FILE)
        (folder / EPOCH_FILE).write_text(json.dumps({"epoch": trainer.epoch}))
        if index in truncated:
            path.write_bytes(path.read_bytes()[:1000])


def test_recorded_checkpoint_is_used_while_it_exists(demo_root, tmp_path):
    write_checkpoints(tmp_path, Trainer(tiny_config(demo_root, tmp_path, epochs=3)), 3)
    assert load_trial_state(tune.Checkpoint(str(tmp_path / "checkpoint_000000")))["epoch"] == 1


def test_deleted_checkpoint_falls_back_to_the_newest_readable_one(demo_root, tmp_path, capsys):
    write_checkpoints(tmp_path, Trainer(tiny_config(demo_root, tmp_path, epochs=4)), 4, truncated=(4,))
    recorded = tmp_path / "checkpoint_000000"
    for file in recorded.iterdir():
        file.unlink()
    recorded.rmdir()  # what num_to_keep did after Ray last saved its experiment state
    state = load_trial_state(tune.Checkpoint(str(recorded)))
    # Epoch 4's file was cut short (a node lost mid-upload): epoch 3 is the newest readable state.
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert "resuming from" in capsys.readouterr().out


def test_no_surviving_checkpoint_means_starting_again(tmp_path):
    assert load_trial_state(tune.Checkpoint(str(tmp_path / "trial" / "checkpoint_000004"))) is None
