"""tune/sweep/prepare.py and tune/cluster/teacher_upload.py: what trials ask for (GPUs from the space on a
cluster, none on a CPU-only machine), and which teacher a cluster sweep must upload first."""

import pytest
import ray
import yaml
from conftest import tiny_space

from core.errors import UserError, cli_errors
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


def test_a_teacher_that_runs_out_of_memory_is_one_line_and_nothing_is_kept(demo_root, tmp_path, monkeypatch, capsys):
    # Ray's memory monitor stops the task (ray.exceptions.OutOfMemoryError at ray.get): stood in for, no Ray.
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "c")))
    space = load_space(space_file)

    class Task:
        def remote(self, *args):
            return "ref"

    def out_of_memory(*args, **kwargs):
        raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.\nMemory ...")

    monkeypatch.setattr(ray, "remote", lambda **options: lambda fn: Task())
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: (refs, []))
    monkeypatch.setattr(ray, "get", out_of_memory)
    with pytest.raises(SystemExit) as info, cli_errors():
        prepare.ensure_teacher(space, tmp_path / "sweep", use_gpu=False)
    err = capsys.readouterr().err
    assert (
        info.value.code == 2
        and "Traceback" not in err
        and err.strip()
        == (
            f"error: the teacher training task ran out of memory: Ray stopped it as its node ran low; lower "
            f"teacher.train's batch_size or img_size in {space_file}, or use nodes with more memory"
        )
    )
    assert not (tmp_path / "sweep" / "teacher").exists()
