"""core/latency.py: a student's latency at a deployment target is measured (fp32, int8, PyTorch), cached per
architecture, target and machine so a second ask does not measure, and a bad `deploy:` value is one line."""

import json

import pytest
import torch

from core import latency
from core.data import discover
from core.errors import UserError
from core.latency import DeployTarget, cached_latency, latency_key, measure_latency, student_arch

SMALL = DeployTarget(img_size=64)  # 64 px, few repeats: speed is not what these tests check


def test_onnxruntime_fp32_and_int8_latencies_are_measured_from_one_export(demo_root, monkeypatch):
    arch = student_arch("mobilenet_v2")
    calibration = discover(demo_root).train[:4]
    exports, write_onnx = [], latency.write_onnx
    monkeypatch.setattr(latency, "write_onnx", lambda *args: (exports.append(args), write_onnx(*args))[1])
    latency._EXPORTS.clear()
    fp32 = measure_latency(arch, SMALL, repeats=3)
    int8 = measure_latency(arch, DeployTarget(runtime="onnxruntime-int8", img_size=64), calibration, repeats=3)
    assert fp32 > 0 and int8 > 0 and len(exports) == 1


def test_torch_latency_is_measured_at_the_target_batch():
    ms = measure_latency(
        student_arch("resnet18"), DeployTarget(runtime="torch", img_size=64, batch=2, threads=1), repeats=3
    )
    assert ms > 0


def test_int8_without_calibration_images_is_refused_before_any_export():
    with pytest.raises(ValueError, match="calibration"):
        measure_latency(student_arch("resnet18"), DeployTarget(runtime="onnxruntime-int8", img_size=64))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_target_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match="CUDA target but no GPU here"):
        measure_latency(student_arch("resnet18"), DeployTarget(runtime="torch", device="cuda", img_size=64))


def test_a_second_ask_reads_the_cache_and_does_not_measure(tmp_path, monkeypatch):
    arch, target = student_arch("resnet18"), DeployTarget(runtime="torch", img_size=64)
    first = cached_latency(arch, target, cache_dir=tmp_path, repeats=2)
    assert first.ms > 0 and not first.cached and "this machine (CPU: " in first.measured_at

    def must_not_measure(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(latency, "measure_latency", must_not_measure)
    second = cached_latency(arch, target, cache_dir=tmp_path)
    assert (second.ms, second.cached, second.key, second.measured_at) == (first.ms, True, first.key, first.measured_at)
    stored = json.loads((tmp_path / "latency" / f"{first.key}.json").read_text())
    assert stored["target"] == target.to_dict() and stored["machine"]["cores"] >= 1


def test_an_unreadable_cache_file_is_measured_again(tmp_path, monkeypatch):
    arch, target = student_arch("resnet18"), DeployTarget(runtime="torch", img_size=64)
    path = tmp_path / "latency" / f"{latency_key(arch, target)}.json"
    path.parent.mkdir()
    path.write_text('{"ms": ')  # a truncated file
    monkeypatch.setattr(latency, "measure_latency", lambda *args, **kwargs: 3.0)
    record = cached_latency(arch, target, cache_dir=tmp_path)
    assert (record.ms, record.cached) == (3.0, False) and json.loads(path.read_text())["ms"] == 3.0


def test_what_latency_depends_on_changes_the_key_and_the_budget_does_not():
    arch = student_arch("mobilenet_v2")
    key = latency_key(arch, SMALL)
    assert latency_key(arch, DeployTarget(img_size=64, threads=2)) != key
    assert latency_key(arch, DeployTarget(img_size=96)) != key
    assert latency_key(arch, DeployTarget(runtime="onnxruntime-int8", img_size=64)) != key
    assert latency_key(student_arch("resnet18"), SMALL) != key
    assert latency_key(arch, DeployTarget(img_size=64, latency_budget_ms=20)) == key


def test_deploy_target_reads_a_yaml_mapping_and_describes_itself():
    target = DeployTarget.from_dict(
        {"runtime": "onnxruntime-int8", "threads": 4, "img_size": 352, "latency_budget_ms": 25}, source="kd.yaml deploy"
    )
    assert target.to_dict() == {
        "runtime": "onnxruntime-int8",
        "device": "cpu",
        "img_size": 352,
        "batch": 1,
        "threads": 4,
        "latency_budget_ms": 25.0,
    }
    assert target.describe() == "ONNX Runtime int8, CPU, 4 threads, 352 px, batch 1, budget 25 ms"
    assert DeployTarget.from_dict(None, source="kd.yaml deploy") == DeployTarget()


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"runtime": "tensorrt"}, "runtime"),
        ({"device": "tpu"}, "device"),
        ({"img_size": 100}, "img_size"),
        ({"threads": -1}, "threads"),
        ({"batch": 0}, "batch"),
        ({"latency_budget_ms": "fast"}, "latency_budget_ms"),
        ({"runtimes": "torch"}, "runtimes"),
    ],
)
def test_a_bad_deploy_value_is_one_line_naming_the_file_and_key(raw, key):
    with pytest.raises(UserError) as info:
        DeployTarget.from_dict(raw, source="search_spaces/kd.yaml deploy")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"search_spaces/kd.yaml deploy: {key}: ")
    if key == "runtime":
        assert "must be one of onnxruntime, onnxruntime-int8, torch, got 'tensorrt'" in message


# The same three errors read the same in a training config (tests/test_config.py) and a search space
# (tests/test_space.py): one validator, core/validation.py.
@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"thread": 2},
            "kd.yaml: deploy.thread: unknown key; known keys: runtime, device, img_size, batch, threads, "
            "latency_budget_ms",
        ),
        ({"batch": "abc"}, "kd.yaml: deploy.batch: expected an integer, got 'abc'"),
        ({"batch": 0}, "kd.yaml: deploy.batch: must be >= 1, got 0"),
    ],
)
def test_unknown_key_wrong_type_and_out_of_range_are_worded_as_everywhere(raw, message):
    with pytest.raises(UserError) as info:
        DeployTarget.from_dict(raw, "kd.yaml", at="deploy")
    assert str(info.value) == message
