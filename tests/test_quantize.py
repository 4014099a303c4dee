"""core/quantize.py and its use in export and prediction: the int8 model is calibrated on training images
only, kept only where it holds validation Dice (else removed, saying why in one line), skipped when the data
or the training split cannot be rebuilt, listed in metrics.json and the model card, and runnable by the
Predictor when asked for."""

import json
import re

import numpy as np
import pytest
import torch

from core import quantize
from core.config import config_from_dict
from core.data import discover
from core.errors import UserError
from core.export import ONNX_FILENAME, export_run
from core.predict import Predictor
from core.quantize import INT8_ONNX_FILENAME, export_int8
from core.split import split_pairs, split_record


@pytest.fixture(scope="module")
def trained(student_checkpoint):
    """A two-epoch 64 px baseline run: (best.pt path, its loaded state, the model)."""
    from core.models import load_model

    model, state = load_model(str(student_checkpoint))
    return student_checkpoint, state, model


@pytest.fixture(scope="module")
def fp32_onnx(student_export):
    return student_export[0] / ONNX_FILENAME  # the shared export's fp32 ONNX of the same run


def config_of(state, **changes):
    return config_from_dict({**state["config"], **changes}, source="test")


def test_calibration_reads_training_images_only(trained, fp32_onnx, tmp_path, monkeypatch):
    _, state, _ = trained
    cfg = config_of(state)
    data = discover(cfg.data_root)
    train, val = split_pairs(data.train, cfg.val_fraction, cfg.split_seed, cfg.val_split, cfg.val_group_pattern)
    seen = []
    real = quantize.calibration_batches
    monkeypatch.setattr(quantize, "calibration_batches", lambda pairs, size: (seen.extend(pairs), real(pairs, size))[1])
    record = export_int8(fp32_onnx, cfg, state["split"], tmp_path / INT8_ONNX_FILENAME, calibration_images=6)
    test_images = {p.image for pairs in data.test_sets.values() for p in pairs}
    assert len(seen) == record["calibration_images"] == 6 and record["calibration_split"] == "training"
    assert {p.stem for p in seen} <= {p.stem for p in train}
    assert not {p.stem for p in seen} & {p.stem for p in val} and not {p.image for p in seen} & test_images
    assert record["val_images"] == len(val) > 0


def test_int8_is_kept_only_when_it_holds_validation_dice(trained, fp32_onnx, tmp_path, monkeypatch):
    _, state, _ = trained
    cfg = config_of(state)
    int8_path = tmp_path / INT8_ONNX_FILENAME
    monkeypatch.setattr(quantize, "INT8_MAX_DICE_DROP", 1.0)
    kept = export_int8(fp32_onnx, cfg, state["split"], int8_path)
    assert kept["written"] and int8_path.is_file() and kept["summary"].startswith("int8: wrote")
    assert kept["val_dice_drop"] == pytest.approx(kept["val_dice_fp32"] - kept["val_dice_int8"], abs=2e-5)
    # The int8 model computes what the fp32 one does, up to quantization error.
    import onnxruntime as ort

    x = torch.randn(2, 3, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0)).numpy()
    fp32, int8 = (
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
        for p in (fp32_onnx, int8_path)
    )
    assert ((fp32 > 0) == (int8 > 0)).mean() > 0.9
    assert np.abs(fp32 - int8).mean() < 0.25 * np.abs(fp32).mean()

    monkeypatch.setattr(quantize, "INT8_MAX_DICE_DROP", -1.0)  # nothing can pass
    refused = export_int8(fp32_onnx, cfg, state["split"], int8_path)
    assert not refused["written"] and not int8_path.exists()
    assert refused["summary"].startswith("int8: not kept") and "fp32 only" in refused["summary"]
    assert len(refused["summary"].splitlines()) == 1


def test_int8_is_skipped_without_data_or_with_another_split(trained, fp32_onnx, tmp_path):
    _, state, _ = trained
    int8_path = tmp_path / INT8_ONNX_FILENAME
    gone = export_int8(fp32_onnx, config_of(state, data_root=str(tmp_path / "elsewhere")), state["split"], int8_path)
    assert not gone["written"] and "data root not reachable" in gone["summary"]
    assert len(gone["summary"].splitlines()) == 1 and not int8_path.exists()
    other = split_record("x", ["a-stem-that-is-not-there"], 0.25, 0, "random", 3)
    changed = export_int8(fp32_onnx, config_of(state), other, int8_path)
    assert not changed["written"] and "not the one the model was trained with" in changed["summary"]
    assert not int8_path.exists()


def test_export_lists_both_models_and_predictor_runs_int8(trained, tmp_path, monkeypatch, capsys):
    checkpoint, _, _ = trained
    monkeypatch.setattr(quantize, "INT8_MAX_DICE_DROP", 1.0)  # a 2-epoch model: keep whatever it scores
    out = tmp_path / "export"
    record = export_run(checkpoint, out, device="cpu")
    assert capsys.readouterr().out.count("int8: wrote") == 1
    assert (out / INT8_ONNX_FILENAME).is_file() and json.loads((out / "metrics.json").read_text()) == record
    int8 = record["int8"]
    assert set(int8["cpu_images_per_s_batch1"]) == {"onnxruntime", "onnxruntime-int8"}
    assert int8["val_dice_fp32"] >= 0 and int8["val_dice_int8"] >= 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "model.int8.onnx" in card and f"{int8['val_dice_int8']:.4f}" in card and "--runtime onnxruntime-int8" in card

    image = np.full((50, 70, 3), 128, np.uint8)
    image[10:30, 20:50] = (200, 90, 90)
    fp32, int8_prediction = (Predictor(out, runtime=r).predict([image])[0] for r in ("onnxruntime", "onnxruntime-int8"))
    assert Predictor(out, runtime="onnxruntime-int8").describe().count("onnxruntime-int8") == 1
    assert int8_prediction.mask.shape == (50, 70) and (int8_prediction.mask == fp32.mask).mean() > 0.9

    (out / INT8_ONNX_FILENAME).unlink()
    with pytest.raises(UserError, match=re.escape("model.int8.onnx: not found")):
        Predictor(out, runtime="onnxruntime-int8")
