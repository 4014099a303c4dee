"""tune/sweep/waits.py: the driver's waits on its Ray tasks end: a node that never comes is one line after the
node wait, a task that ran out of memory is one line naming it and what to lower. Ray's calls are stood in
for (no Ray starts); tests/test_prepare.py checks the teacher's wait through ensure_teacher."""

import pytest
import ray
import torch

from core.errors import UserError, cli_errors
from tune.sweep import waits

CPU_NODE = {"Alive": True, "Resources": {"CPU": 2.0}}


@pytest.fixture
def pending(monkeypatch):
    """A task that never starts: Ray's wait never finds it ready; the cluster has one CPU-only node."""
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: ([], refs))
    monkeypatch.setattr(ray, "nodes", lambda: [CPU_NODE])
    monkeypatch.setattr(ray, "get", lambda *a, **k: pytest.fail("ray.get on a task that is not ready"))


def test_a_gpu_node_that_never_joins_is_one_line_after_the_node_wait(pending, monkeypatch, capsys):
    monkeypatch.setenv(waits.NODE_WAIT_ENV, "0.2")
    with pytest.raises(SystemExit) as info, cli_errors():
        waits.task_result("ref", "the CUDA latency measurement", {"CPU": 1, "GPU": 1}, "lower deploy.batch")
    out, err = capsys.readouterr()
    assert out == "waiting for a node with 1 CPU, 1 GPU for the CUDA latency measurement (none yet; at most 0.2 s)\n"
    assert info.value.code == 2 and err == (
        "error: the CUDA latency measurement: no node with 1 CPU, 1 GPU joined in 0.2 s; add one to the cluster "
        "(`ray status` shows what the autoscaler does), ask for less (resources.gpu, resources.cpu, "
        "deploy.device), or wait longer with $POLYP_KD_TUNE_NODE_WAIT_S\n"
    )


def test_a_task_that_fits_a_node_is_waited_for_however_long_it_runs(monkeypatch, capsys):
    polls = iter([([], ["ref"])] * 5 + [(["ref"], [])])
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: next(polls))
    monkeypatch.setattr(ray, "nodes", lambda: [CPU_NODE])
    monkeypatch.setattr(ray, "get", lambda ref, timeout: "trained")
    monkeypatch.setenv(waits.NODE_WAIT_ENV, "0.000001")  # shorter than the polls: a running task is not cut
    assert waits.task_result("ref", "the teacher training task", {"CPU": 2, "GPU": 0}, "lower batch_size") == "trained"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "error, line",
    [
        (
            ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.\nMemory on ..."),
            "error: the teacher training task ran out of memory: Ray stopped it as its node ran low; lower "
            "batch_size, or use nodes with more memory",
        ),
        (
            ray.exceptions.RayTaskError("fn", "Traceback ...", torch.cuda.OutOfMemoryError("CUDA out of memory.")),
            "error: the teacher training task ran out of GPU memory; lower batch_size, or use a GPU with more memory",
        ),
    ],
)
def test_out_of_memory_is_one_line_naming_the_task_and_what_to_lower(monkeypatch, capsys, error, line):
    monkeypatch.setattr(ray, "wait", lambda refs, timeout: (refs, []))

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ray, "get", fail)
    with pytest.raises(SystemExit) as info, cli_errors():
        waits.task_result("ref", "the teacher training task", {"CPU": 2}, "lower batch_size")
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.strip() == line and "Traceback" not in err


def test_node_wait_setting_must_be_seconds(monkeypatch):
    monkeypatch.setenv(waits.NODE_WAIT_ENV, "soon")
    with pytest.raises(UserError, match=r"\$POLYP_KD_TUNE_NODE_WAIT_S='soon': must be a number of seconds > 0"):
        waits.node_wait_s()
