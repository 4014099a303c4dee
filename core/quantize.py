"""The int8 student: ONNX Runtime static quantization of the exported fp32 ONNX model, calibrated on
training images preprocessed exactly as inference does, and kept only where it costs at most
INT8_MAX_DICE_DROP mean validation Dice against fp32 (measured on the run's own validation split).

Format QDQ, weights int8 per output channel, activations uint8 (MinMax ranges): the U8S8 kernels ONNX
Runtime runs with AVX-512 VNNI / AVX2 on x86. QDQ and QOperator ran at the same speed on this CPU
(bench/inference.py); QDQ is ONNX Runtime's recommended format and also runs on its GPU providers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.config import TrainConfig
from core.data import EvalSet, SamplePair, discover, eval_loader, normalize, preprocess, read_image
from core.errors import UserError
from core.metrics import SegmentationScores
from core.split import training_split

if TYPE_CHECKING:
    import onnxruntime as ort

INT8_ONNX_FILENAME = "model.int8.onnx"
INT8_MAX_DICE_DROP = 0.005
# Calibration images, spread over the training split (every source represented); each costs one fp32
# forward pass with every tensor as an output, so more slow the export down.
CALIBRATION_IMAGES = 64
QUANT_FORMAT = "QDQ"


def quantize(
    fp32_path: Path, int8_path: Path, calibration: Iterator[np.ndarray], quant_format: str = QUANT_FORMAT
) -> None:
    """Static int8 quantization of `fp32_path` (input `image`) with activation ranges from `calibration`
    (normalised NCHW float32 batches)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(calibration, None)
            return None if batch is None else {"image": batch}

    with _quiet_quantizer():
        quantize_static(
            str(fp32_path),
            str(int8_path),
            Batches(),
            quant_format=QuantFormat[quant_format],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def calibration_batches(pairs: Sequence[SamplePair], img_size: int, batch_size: int = 8) -> Iterator[np.ndarray]:
    """Images read and preprocessed as `core.predict` feeds the model (resize, then `normalize`)."""
    for start in range(0, len(pairs), batch_size):
        images = [preprocess(read_image(pair.image), img_size) for pair in pairs[start : start + batch_size]]
        yield normalize(torch.stack(images)).numpy()


def spread(pairs: Sequence[SamplePair], n: int) -> list[SamplePair]:
    """`n` pairs evenly spaced over `pairs` (sorted by stem), so every source in the pool is represented."""
    ordered = sorted(pairs, key=lambda p: p.stem)
    if len(ordered) <= n:
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, n).round().astype(int)]


def onnx_scores(
    model_paths: dict[str, Path], pairs: Sequence[SamplePair], img_size: int, batch_size: int = 8
) -> dict[str, dict[str, float]]:
    """Per-image Dice/IoU of each ONNX model on `pairs`, scored as core.evaluate scores (threshold 0.5 at
    each mask's original size); every image is read once for all models."""
    sessions = {name: _session(path) for name, path in model_paths.items()}
    scores = {name: SegmentationScores() for name in sessions}
    for batch in eval_loader(EvalSet(pairs, img_size), batch_size, num_workers=0):
        images = normalize(batch.images).numpy()
        for name, session in sessions.items():
            scores[name].add_batch(torch.from_numpy(session.run(None, {"image": images})[0]), batch.masks)
    return {name: s.summary() for name, s in scores.items()}


def export_int8(
    fp32_path: Path,
    cfg: TrainConfig,
    trained_split: dict[str, Any] | None,
    int8_path: Path,
    calibration_images: int = CALIBRATION_IMAGES,
) -> dict[str, Any]:
    """Write `int8_path` next to the fp32 model when it holds validation Dice, else leave it absent.
    Returns what metrics.json records under 'int8'; its 'summary' is one line saying what happened."""
    try:
        data = discover(cfg.data_root)
    except UserError as err:
        return _skipped(f"data root not reachable ({err})")
    split = training_split(cfg, data.train)
    train, val, rebuilt = split.train, split.val, split.record
    if trained_split is not None and rebuilt["val_sha256"] != trained_split["val_sha256"]:
        # The files under data_root changed since training: this "validation" split could hold images the
        # model was trained on, and calibration images it was validated on.
        return _skipped(
            f"the validation split rebuilt from {cfg.data_root} is not the one the model was "
            f"trained with (files added or removed since)"
        )
    calibration = spread(train, calibration_images)
    started = time.perf_counter()
    quantize(fp32_path, int8_path, calibration_batches(calibration, cfg.img_size))
    quantize_seconds = time.perf_counter() - started
    scores = onnx_scores({"fp32": fp32_path, "int8": int8_path}, val, cfg.img_size)
    fp32, int8 = scores["fp32"]["dice"], scores["int8"]["dice"]
    drop = fp32 - int8
    record = {
        "written": drop <= INT8_MAX_DICE_DROP,
        "format": QUANT_FORMAT,
        "weights": "int8 per channel",
        "activations": "uint8, MinMax ranges",
        "calibration_images": len(calibration),
        "calibration_split": "training",
        "val_images": scores["fp32"]["n"],
        "val_dice_fp32": round(fp32, 5),
        "val_dice_int8": round(int8, 5),
        "val_dice_drop": round(drop, 5),
        "max_val_dice_drop": INT8_MAX_DICE_DROP,
        "quantize_seconds": round(quantize_seconds, 1),
    }
    dice = f"val Dice {int8:.4f} vs fp32 {fp32:.4f} ({-drop:+.4f}) on {scores['fp32']['n']} validation images"
    if record["written"]:
        record["summary"] = f"int8: wrote {INT8_ONNX_FILENAME}: {dice}"
    else:
        int8_path.unlink()
        record["summary"] = f"int8: not kept, it loses {drop:.4f} val Dice (> {INT8_MAX_DICE_DROP}): {dice}; fp32 only"
    return record


def _skipped(reason: str) -> dict[str, Any]:
    return {"written": False, "summary": f"int8: skipped, {reason}; fp32 only"}


def _session(path: Path) -> ort.InferenceSession:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    # onnxruntime.quantization logs advice and per-tensor notes (e.g. on the int64 shape inputs of
    # Resize, which are not meant to be quantized) through the root logger at WARNING.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
