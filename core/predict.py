"""Use an exported model on new images: `Predictor` (ONNX Runtime or PyTorch) and the batch job behind
`python -m tune.best predict`, which writes a mask and an overlay per image at the image's own size.

Preprocessing is `core.data.preprocess` + `normalize`, the very functions evaluation uses, and masks are
thresholded like `core.metrics.binarize`, so a prediction here is what the reported scores measured.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.checkpoint import load_checkpoint
from core.config import config_from_dict
from core.data import IMAGE_SUFFIXES, normalize, preprocess, read_image
from core.errors import UserError
from core.evaluate import tint
from core.export import ONNX_FILENAME
from core.files import OutputKind, check_output, output_folder, writing
from core.image_files import write_png
from core.metrics import THRESHOLD
from core.models import load_model, resolve_device
from core.quantize import INT8_ONNX_FILENAME

if TYPE_CHECKING:
    import onnxruntime as ort

RUNTIMES = ("auto", "onnxruntime", "onnxruntime-int8", "pytorch")
PREDICTIONS_CSV = "predictions.csv"
PREDICTION_KIND = OutputKind("a prediction folder")
PREDICTION_COLOUR = (255, 0, 0)  # red, as core.evaluate draws predictions


@dataclass
class Prediction:
    """One image's result at the image's original size."""

    probability: np.ndarray  # H x W float32 in [0, 1]
    mask: np.ndarray  # H x W bool, probability > 0.5
    seconds: float  # this image's share of its batch's model time (preprocessing excluded)

    @property
    def area_percent(self) -> float:
        return 100.0 * float(self.mask.mean())


class Predictor:
    """An exported model ready for inference.

    `model_dir` is an export folder (model.pt with the config it was trained with, model.onnx) or any
    checkpoint core.evaluate accepts. Runtime `auto` is ONNX Runtime where the folder has model.onnx (the
    faster one on CPU, see bench/inference.py) and no CUDA GPU is visible, PyTorch otherwise;
    `onnxruntime-int8` runs model.int8.onnx, which an export writes where it holds validation Dice.
    """

    def __init__(self, model_dir: str | Path, runtime: str = "auto", device: str = "auto"):
        path = Path(model_dir)
        if runtime not in RUNTIMES:
            raise UserError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        if not path.exists():
            raise UserError(
                f"{path}: model folder not found; export one with `python -m tune.best export` "
                f"(a sweep) or `python -m core.export --checkpoint RUN --out DIR` (one run)"
            )
        self.path = path
        self.device = resolve_device(device)
        onnx_path = path / (INT8_ONNX_FILENAME if runtime == "onnxruntime-int8" else ONNX_FILENAME)
        if runtime == "auto":
            runtime = "onnxruntime" if onnx_path.is_file() and self.device.type != "cuda" else "pytorch"
        self.runtime = runtime
        if runtime.startswith("onnxruntime"):
            if not onnx_path.is_file():
                raise UserError(
                    f"{onnx_path}: not found; pass an export folder with {onnx_path.name} "
                    f"(an export writes {INT8_ONNX_FILENAME} only where it holds validation Dice: "
                    f"see its metrics.json) or use --runtime pytorch"
                )
            # Memory-mapped: the config and provenance without reading the weights ONNX Runtime does not need.
            state = load_checkpoint(path, mmap=True)
            self._session = _onnx_session(onnx_path)
        else:
            model, state = load_model(str(path))
            self._model = model.to(self.device)
        self.config = config_from_dict(state["config"], source=f"{state['path']} config")
        if runtime.startswith("onnxruntime"):
            _check_onnx_size(self._session, onnx_path, self.config.img_size, state["path"])
        self.synthetic = bool(state.get("synthetic_data"))

    @property
    def img_size(self) -> int:
        return self.config.img_size

    def describe(self) -> str:
        where = "CPU" if self.runtime.startswith("onnxruntime") else str(self.device)
        return f"{self.path} ({self.img_size}px input, {self.runtime} on {where})"

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised B x 3 x S x S float -> B x 1 x S x S logits on the CPU."""
        if self.runtime.startswith("onnxruntime"):
            return torch.from_numpy(self._session.run(None, {"image": images.numpy()})[0])
        with torch.inference_mode():
            return self._model(images.to(self.device)).float().cpu()

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Prediction]:
        """RGB uint8 H x W x 3 images of any sizes -> one Prediction each, in order."""
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = normalize(torch.stack([preprocess(image, self.img_size) for image in chunk]))
            began = time.perf_counter()
            logits = self.logits(batch)
            share = (time.perf_counter() - began) / len(chunk)
            for image, one in zip(chunk, logits):
                probability = _probability_at(one, image.shape[:2])
                results.append(Prediction(probability, probability > THRESHOLD, share))
        return results


def overlay(image_rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the predicted region tinted red and outlined: RGB uint8."""
    return tint(image_rgb, mask.astype(np.uint8), PREDICTION_COLOUR)


@dataclass
class PredictionRun:
    """What `predict_files` did: images written, inputs it could not use (one line each), timings."""

    out: Path
    runtime: str
    written: list[tuple[Path, float]] = field(default_factory=list)  # (source image, polyp area %)
    problems: list[str] = field(default_factory=list)
    model_seconds: float = 0.0
    total_seconds: float = 0.0

    def summary(self) -> str:
        n = len(self.written)
        if not n:
            return f"no image predicted; {len(self.problems)} input(s) could not be used"
        areas = [area for _, area in self.written]
        text = (
            f"predicted {n} image(s) into {self.out} (masks/, overlays/, {PREDICTIONS_CSV}); polyp area "
            f"mean {np.mean(areas):.1f}% (min {min(areas):.1f}%, max {max(areas):.1f}%); "
            f"{n / self.total_seconds:.1f} img/s end to end, model {n / self.model_seconds:.1f} img/s "
            f"({self.runtime})"
        )
        if self.problems:
            text += f"; {len(self.problems)} input(s) skipped (listed above)"
        return text


def find_images(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Image files named directly or found in the given folders (not recursive; other files in a folder
    are ignored), and one problem line per input that cannot be used."""
    files: list[Path] = []
    problems: list[str] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(
                    f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)}); pass a folder of images"
                )
            files += found
        elif not item.exists():
            problems.append(f"{item}: not found; check the path")
        elif item.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{item}: not an image file ({', '.join(IMAGE_SUFFIXES)}); remove it from the inputs")
        else:
            files.append(item)
    # Outputs are named by stem, so two inputs with one stem would overwrite each other.
    seen: dict[str, Path] = {}
    unique = []
    for path in files:
        if path.stem in seen:
            problems.append(
                f"{path}: same name as {seen[path.stem]} (outputs are named by stem); "
                f"rename one or predict them separately"
            )
        else:
            seen[path.stem] = path
            unique.append(path)
    return unique, problems


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out: str | Path,
    batch_size: int = 8,
    progress: bool = True,
    report: Callable[[str], None] | None = None,
    protected: Sequence[tuple[str, str | Path]] = (),
) -> PredictionRun:
    """Predict every image in `inputs` and write OUT/masks/<stem>.png (0/255, original size),
    OUT/overlays/<stem>.png and OUT/predictions.csv. An input that cannot be used (not an image, unreadable
    or truncated, an empty folder) is skipped and named in `problems`; the others are still written.
    `report(line)` sees each problem as it is found. The folder is written whole or not at all, and only
    over an earlier prediction folder; it may not be, contain or lie inside an input, the model folder or
    `protected` (label, path), e.g. a sweep folder (core.files.check_output)."""
    model_folder = predictor.path if predictor.path.is_dir() else predictor.path.parent
    guarded = [("--model folder", model_folder), *(("input", path) for path in inputs), *protected]
    check_output(out, PREDICTION_KIND, guarded)  # before any work: a refused --out costs nothing
    files, problems = find_images(inputs)
    run = PredictionRun(Path(out), predictor.runtime)
    note = report or (lambda line: None)

    def add_problem(line: str) -> None:
        run.problems.append(line)
        note(line)

    for line in problems:
        add_problem(line)
    if not files:
        return run
    started = time.perf_counter()
    try:
        with output_folder(out, PREDICTION_KIND, guarded) as tmp:
            rows = _write_predictions(predictor, files, tmp, batch_size, progress, add_problem, run)
            if not rows:
                raise _NothingPredicted  # leaves `out` as it was
            with writing(tmp / PREDICTIONS_CSV), (tmp / PREDICTIONS_CSV).open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    except _NothingPredicted:
        pass
    run.total_seconds = time.perf_counter() - started
    return run


def _write_predictions(
    predictor: Predictor,
    files: Sequence[Path],
    tmp: Path,
    batch_size: int,
    progress: bool,
    add_problem: Callable[[str], None],
    run: PredictionRun,
) -> list[dict[str, Any]]:
    """Masks and overlays of every readable file into `tmp`; the rows of predictions.csv."""
    (tmp / "masks").mkdir()
    (tmp / "overlays").mkdir()
    rows = []
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for batch in _readable_batches(files, batch_size, add_problem, bar):
            paths, images = zip(*batch)
            for path, image, prediction in zip(paths, images, predictor.predict(images, batch_size)):
                write_png(tmp / "masks" / f"{path.stem}.png", prediction.mask.astype(np.uint8) * 255)
                write_png(
                    tmp / "overlays" / f"{path.stem}.png",
                    cv2.cvtColor(overlay(image, prediction.mask), cv2.COLOR_RGB2BGR),
                )
                run.model_seconds += prediction.seconds
                run.written.append((path, prediction.area_percent))
                rows.append(
                    {
                        "image": str(path),
                        "mask": f"masks/{path.stem}.png",
                        "height": image.shape[0],
                        "width": image.shape[1],
                        "polyp_area_percent": f"{prediction.area_percent:.3f}",
                    }
                )
                bar.update(1)
    return rows


class _NothingPredicted(Exception):
    """No input image could be read: the output folder is not created (or not replaced)."""


def _readable_batches(
    files: Sequence[Path], batch_size: int, add_problem: Callable[[str], None], bar: tqdm
) -> Iterator[list[tuple[Path, np.ndarray]]]:
    batch: list[tuple[Path, np.ndarray]] = []
    for path in files:
        try:
            batch.append((path, read_image(path)))
        except UserError as err:
            add_problem(str(err))
            bar.update(1)
            continue
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _probability_at(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """1 x S x S logits -> H x W probability, resized bilinearly as logits (as core.metrics.binarize)."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return torch.sigmoid(logits[0]).numpy()


def _check_onnx_size(session: ort.InferenceSession, path: Path, img_size: int, checkpoint: str) -> None:
    """An ONNX model takes one input size (only the batch axis is dynamic): fed at the config's img_size, one
    made at another size fails deep inside ONNX Runtime, or (a model copied in by hand) is not this model."""
    height, width = session.get_inputs()[0].shape[-2:]
    fixed = [side for side in (height, width) if isinstance(side, int)]  # a named axis takes any size
    if any(side != img_size for side in fixed):
        raise UserError(
            f"{path}: takes {height}x{width} images but {checkpoint} was trained at img_size "
            f"{img_size}; re-export the model (python -m core.export / python -m tune.best export)"
        )


def _onnx_session(path: Path) -> ort.InferenceSession:
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    # ORT's errors for a bad file are its own types, not subclasses of OSError or ValueError.
    bad_file = (ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.Fail, ort_errors.NoSuchFile)
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except bad_file as err:
        raise UserError(
            f"{path}: not a readable ONNX model ({err.__class__.__name__}); re-export the model "
            f"or pass --runtime pytorch"
        ) from None
