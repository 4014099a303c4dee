"""tune/sweep/prepare.py and tune/cluster/teacher_upload.py: what trials ask for (GPUs from the space on a
cluster, none on a CPU-only machine), and which teacher a cluster sweep must upload first."""

import pytest
import yaml

from core.errors import UserError
from tune.cluster.teacher_upload import teacher_upload
from tune.space import SPACES_DIR, load_space
from tune.sweep import prepare


@pytest.fixture()
def no_gpu_here(monkeypatch):
    monkeypatch.setattr(prepare.torch.cuda, "is_available", lambda: False)


def test_cpu_machine_runs_on_cpu_and_says_so(no_gpu_here, capsys):
    assert prepare.requests_gpu(load_space("kd.yaml"), address=None) is False
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no GPU on this machine: trials run on CPU")


def test_cluster_without_gpus_yet_still_asks_for_the_spaces_gpus(no_gpu_here, monkeypatch, capsys):
    # An autoscaling cluster starts with a CPU head only: the request is what makes it add GPU workers.
    monkeypatch.setattr(prepare.ray, "cluster_resources", lambda: {"CPU": 0.0})
    assert prepare.requests_gpu(load_space("kd.yaml"), address="auto") is True
    assert "cluster has no GPU yet: each trial asks for 0.5 GPU" in capsys.readouterr().out


def test_gpu_machine_asks_for_gpus_silently(monkeypatch, capsys):
    monkeypatch.setattr(prepare.torch.cuda, "is_available", lambda: True)
    assert prepare.requests_gpu(load_space("kd.yaml"), address=None) is True
    assert capsys.readouterr().out == ""


def test_space_without_gpus_never_asks(no_gpu_here, tmp_path, capsys):
    space = yaml.safe_load((SPACES_DIR / "kd.yaml").read_text())
    space["resources"] = {"cpu": 1}
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(space))
    assert prepare.requests_gpu(load_space(path), address="auto") is False
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("gpu", [1.5, 2])
def test_more_than_one_gpu_per_trial_is_refused(tmp_path, gpu):
    space = yaml.safe_load((SPACES_DIR / "kd.yaml").read_text())
    space["resources"] = {"cpu": 2, "gpu": gpu}
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(UserError, match=rf"resources.gpu: must be in \[0, 1\] \(a trial trains on one GPU.*got {gpu}"):
        load_space(path)


def test_only_a_local_teacher_is_uploaded(tmp_path, teacher_checkpoint):
    space = load_space("kd.yaml")
    space.teacher.checkpoint = "s3://bucket/teachers/best.pt"
    assert teacher_upload(space, "s3://bucket/sweeps") is None
    space.teacher.checkpoint = None
    assert teacher_upload(space, "s3://bucket/sweeps") is None
    space.teacher.checkpoint = str(teacher_checkpoint.parent)  # a run folder names its best.pt
    local, uri = teacher_upload(space, "s3://bucket/sweeps")
    assert local == teacher_checkpoint and uri.startswith("s3://bucket/sweeps/teachers/") and uri.endswith("/best.pt")
    space.teacher.checkpoint = str(tmp_path / "missing")
    with pytest.raises(UserError, match="is not on this machine"):
        teacher_upload(space, "s3://bucket/sweeps")
