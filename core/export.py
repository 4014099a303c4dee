"""Export a trained model as a self-contained folder: weights, config, metrics, ONNX checked against
PyTorch with ONNX Runtime (and both timed), an int8 ONNX model where it holds validation Dice
(core/quantize.py), and a model card. No Ray: `tune.best export` calls it for a sweep's winner, and
`python -m core.export --checkpoint RUN --out DIR` for any single training run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from core.checkpoint import WEIGHTS_FILENAME, best_epoch, resolve_checkpoint_path, save_checkpoint
from core.config import config_from_dict
from core.data import discover, normalize, preprocess, read_image
from core.errors import UserError, cli_errors
from core.files import OutputKind, check_output, output_folder, writing
from core.models import count_parameters, load_model, resolve_device
from core.quantize import INT8_MAX_DICE_DROP, INT8_ONNX_FILENAME, export_int8

ONNX_FILENAME = "model.onnx"
CONFIG_FILENAME = "config.yaml"
METRICS_FILENAME = "metrics.json"
CARD_FILENAME = "MODEL_CARD.md"
EXPORT_FILES = (WEIGHTS_FILENAME, CONFIG_FILENAME, METRICS_FILENAME, ONNX_FILENAME, CARD_FILENAME)
# Beside them, INT8_ONNX_FILENAME where the int8 model holds validation Dice (metrics.json 'int8' says why not).
# ONNX Runtime and PyTorch order float operations differently; 1e-3 on logits is far below what could
# flip a thresholded pixel except right at the boundary.
ONNX_TOLERANCE = 1e-3
# What an earlier export holds, so that --out replaces only one (an evaluation folder has metrics.json too).
EXPORT_KIND = OutputKind("an export folder")


@dataclass(frozen=True)
class ExportMetrics:
    """How the exported weights were chosen and how they scored; written to metrics.json and the card.

    `test` is a `core.evaluate.evaluate_test_sets` report ({'test_sets', 'mean', 'missing', ...}).
    `sweep`/`trial_id`/`objective`/`params`/`verdict` are set for a sweep's winner, None/empty for a single run.
    """

    best_val_dice: float
    best_epoch: int
    test: dict[str, Any]
    synthetic_data: bool
    best_val_iou: float | None = None
    sweep: str | None = None
    trial_id: str | None = None
    objective: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None  # distillation vs. the same student without a teacher, over seeds
    selection: str | None = None  # how a sweep chose it (e.g. its confirmed mean over seeds)
    # A sweep with a deploy target: {target, described, latency_ms, fps, budget_ms, measured_at, ...}
    # (tune.best builds it from best.json's front); None for everything else.
    deployment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        if record["deployment"] is None:  # an export without a deploy target reads as it did before targets
            del record["deployment"]
        # Through JSON once, so what is returned is exactly what metrics.json holds (numpy scalars etc.).
        return json.loads(json.dumps(record))


def export_model(
    model: nn.Module,
    state: dict[str, Any],
    metrics: ExportMetrics,
    out: str | Path,
    report: Callable[[str], None] = print,
    protected: Sequence[tuple[str, str | Path]] = (),
    allowed: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Write model.pt, config.yaml, metrics.json, model.onnx, model.int8.onnx (where it holds validation
    Dice) and MODEL_CARD.md to `out` (built in a temporary sibling and renamed, so a failure leaves no
    half-written folder) and return metrics.json. `report` gets one line saying what became of int8.

    `state` is the loaded checkpoint the weights came from (its `config`, `architecture` and `split`); its
    folder, and `protected` (label, path) such as the sweep folder, are inputs `out` must stay clear of
    (core.files.check_output; `allowed`: paths inside them that may be written, i.e. <sweep>/export)."""
    model = model.cpu().eval()
    cfg = state["config"]
    record = metrics.to_dict()
    inputs = [*protected, ("checkpoint folder", Path(state["path"]).parent)]
    with output_folder(out, EXPORT_KIND, inputs, allowed, needed_bytes=export_size(model)) as tmp:
        with writing(tmp / WEIGHTS_FILENAME):
            save_checkpoint(
                {
                    "config": cfg,
                    "architecture": state["architecture"],
                    "model": model.state_dict(),
                    "weights_only": True,
                    "epoch": metrics.best_epoch,
                    "metrics": record,
                    "synthetic_data": metrics.synthetic_data,
                    # An exported teacher is checked against the students' split (core/split.py).
                    "split": state.get("split"),
                },
                tmp / WEIGHTS_FILENAME,
            )
        _write_text(tmp / CONFIG_FILENAME, yaml.safe_dump(cfg, sort_keys=False))
        with writing(tmp / ONNX_FILENAME):
            record["onnx"] = export_onnx(model, cfg, tmp / ONNX_FILENAME)
        train_cfg = config_from_dict(cfg, source=f"{state.get('path', 'checkpoint')} config")
        with writing(tmp / INT8_ONNX_FILENAME):
            record["int8"] = export_int8(tmp / ONNX_FILENAME, train_cfg, state.get("split"), tmp / INT8_ONNX_FILENAME)
        add_cpu_speed(record["onnx"], record["int8"], model, tmp / ONNX_FILENAME, cfg["img_size"])
        report(record["int8"]["summary"])
        _write_text(tmp / METRICS_FILENAME, json.dumps(record, indent=2))
        _write_text(tmp / CARD_FILENAME, model_card(metrics, state, model, record["onnx"], record["int8"]))
    return record


def export_size(model: nn.Module) -> int:
    """Bytes an export of `model` takes, about: model.pt and model.onnx each hold the fp32 weights,
    model.int8.onnx a quarter of them; the rest is kilobytes."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return int(2.25 * weights)


def _write_text(path: Path, text: str) -> None:
    with writing(path):
        path.write_text(text)


def write_onnx(model: nn.Module, img_size: int, path: Path) -> None:
    """ONNX (one file) with a dynamic batch axis; input `image` (normalised NCHW), output `logits`."""
    example = torch.zeros(2, 3, img_size, img_size)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def inference_speed(
    model: nn.Module | None,
    onnx_path: Path | None,
    img_size: int,
    batch: int,
    repeats: int = 10,
    int8_path: Path | None = None,
    threads: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Images/s of PyTorch eager (unless `model` is None), ONNX Runtime (unless `onnx_path` is None) and, given
    `int8_path`, ONNX Runtime on the int8 model: the median of `repeats` calls each, the runtimes taking turns
    so that a change in the machine's load weighs on all of them alike. `threads` > 0 sets ONNX Runtime's
    intra-op threads (0: its default, one per physical core). `device` "cuda" runs PyTorch on the GPU and
    ONNX Runtime with its CUDA provider (input copied from host memory each call, as an application's is)."""
    import onnxruntime as ort

    x = torch.randn(batch, 3, img_size, img_size)
    runners: dict[str, Callable[[], Any]] = {} if model is None else {"pytorch": _torch_runner(model, x, device)}
    paths = {
        name: path for name, path in (("onnxruntime", onnx_path), ("onnxruntime-int8", int8_path)) if path is not None
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # ONNX Runtime's threads spin-wait after each call; with sessions taking turns, the one that just ran
    # spun on the cores the next one needed (fp32 read 2-3x slower right after int8 on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    for name, path in paths.items():
        session = ort.InferenceSession(str(path), options, providers=[provider])
        if session.get_providers()[0] != provider:
            # ONNX Runtime falls back to the CPU with only a warning: the time would be the CPU's.
            raise RuntimeError(f"ONNX Runtime has no {provider} here (it runs on {session.get_providers()})")
        runners[name] = _onnx_runner(session, x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for run in runners.values():
            for _ in range(3 if device == "cuda" else 1):  # warm-up; CUDA's first calls also pick kernels
                run()
        for _ in range(repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def _onnx_runner(session: Any, x: torch.Tensor) -> Callable[[], Any]:
    return lambda: session.run(None, {"image": x.numpy()})


def _torch_runner(model: nn.Module, x: torch.Tensor, device: str) -> Callable[[], Any]:
    if device != "cuda":
        return lambda: model(x)
    model, x = model.to(device), x.to(device)

    def run() -> None:
        model(x)
        torch.cuda.synchronize()  # CUDA calls return before the GPU finishes: time the work, not the launch

    return run


def add_cpu_speed(
    onnx_check: dict[str, Any], int8: dict[str, Any], model: nn.Module, onnx_path: Path, img_size: int
) -> None:
    """Time PyTorch, ONNX Runtime and (where it was kept) the int8 model once, together, at batch 1, and
    record what the model card recommends and how int8 compares."""
    int8_path = onnx_path.with_name(INT8_ONNX_FILENAME) if int8["written"] else None
    speed = inference_speed(model, onnx_path, img_size, batch=1, repeats=5, int8_path=int8_path)
    fp32 = {k: round(speed[k], 2) for k in ("pytorch", "onnxruntime")}
    onnx_check.update(cpu_images_per_s_batch1=fp32, recommended_runtime=max(fp32, key=fp32.__getitem__))
    if int8_path is not None:
        int8["cpu_images_per_s_batch1"] = {k: round(speed[k], 2) for k in ("onnxruntime", "onnxruntime-int8")}
        int8["int8_over_fp32_batch1"] = round(speed["onnxruntime-int8"] / speed["onnxruntime"], 2)
        int8["summary"] += f"; {int8['int8_over_fp32_batch1']:.2f}x fp32 ONNX Runtime at batch 1"


def export_onnx(model: nn.Module, cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write ONNX and check the same test image through PyTorch and ONNX Runtime."""
    import onnxruntime as ort

    write_onnx(model, cfg["img_size"], path)
    image, source = _reference_image(cfg)
    with torch.no_grad():
        expected = model(image).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": image.numpy()})[0]
    diff = float(np.abs(actual - expected).max())
    if not diff < ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.3g} on {source}")
    return {"max_abs_diff": diff, "checked_on": source, "opset": _opset(path)}


def model_card(
    metrics: ExportMetrics, state: dict[str, Any], model: nn.Module, onnx_check: dict[str, Any], int8: dict[str, Any]
) -> str:
    """MODEL_CARD.md: where the weights came from, their test scores, the searched values, the model and its
    runtimes (from `onnx_check` and `int8`, as export_model records them) and how to use it."""
    cfg, arch = state["config"], state["architecture"]
    origin = _card_origin(metrics, state)
    params = "\n".join(f"- `{k}`: {v}" for k, v in metrics.params.items()) or "- (a single run: none searched)"
    teacher = f", teacher `{cfg['teacher_checkpoint']}`" if cfg["mode"] == "distillation" else ""
    n_params = f"{count_parameters(model) / 1e6:.2f}M"
    verdict = f"\n\n**Verdict:** {metrics.verdict}." if metrics.verdict else ""
    latency = f"\n\n{card_latency_line(metrics.deployment)}" if metrics.deployment else ""
    warning = (
        "\n> **Trained and scored on SYNTHETIC demo data** (generated by `python -m core.data demo`). "
        "These numbers say nothing about real polyp segmentation.\n"
        if metrics.synthetic_data
        else ""
    )
    return f"""# Polyp segmentation student: {arch["arch"]} / {arch["encoder"]}
{warning}
{origin} on validation Dice ({metrics.best_val_dice:.4f} at epoch {metrics.best_epoch}) of a split carved
from TrainDataset; the test sets below were only scored, never used for selection.{verdict}{latency}

## Data
- data root: `{cfg["data_root"]}`; mode `{cfg["mode"]}`{teacher}
- validation fraction {cfg["val_fraction"]} of TrainDataset

## Test Dice / IoU (per-image mean, threshold 0.5, at each mask's original size)
{_card_test_table(metrics.test)}

## Hyperparameters found
{params}

## Model
- architecture: smp.{arch["arch"]}(encoder_name="{arch["encoder"]}", classes=1), {n_params} parameters
- input: RGB, resized to {cfg["img_size"]}x{cfg["img_size"]} (bilinear), scaled to [0, 1] then normalised
  with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); output: one logit map, resized
  back to the image's size (bilinear), polyp where sigmoid > 0.5
- ONNX: {_card_onnx_line(onnx_check)}
- {_card_runtime_line(onnx_check)}
- {_card_int8_line(int8)}

{_CARD_USAGE}"""


_CARD_USAGE = f"""## How to use
```bash
python -m tune.best predict --model <this folder> IMAGE_OR_FOLDER... --out masks/   # masks + overlays
python -m tune.best demo --model <this folder>                                     # local web demo
python -m core.evaluate --checkpoint <this folder> --data-root dataset --save-visuals
```
```python
from core.predict import Predictor
prediction = Predictor("<this folder>").predict([rgb_uint8_image])[0]   # .mask, .probability
```
```python
import onnxruntime as ort
logits = ort.InferenceSession("{ONNX_FILENAME}").run(None, {{"image": batch_nchw_float32}})[0]
```
"""


def _card_origin(metrics: ExportMetrics, state: dict[str, Any]) -> str:
    if metrics.sweep is not None:
        chosen = f", {metrics.selection}" if metrics.selection else ""
        instead = (metrics.deployment or {}).get("instead_of")
        title = (
            f"Best confirmed student of sweep `{metrics.sweep}` within the latency budget, exported instead "
            f"of its winner `{instead}`"
            if instead
            else f"Winner of sweep `{metrics.sweep}`"
        )
        return f"{title} (trial `{metrics.trial_id}`{chosen}); these weights were selected"
    return f"Best-validation weights of run `{state['path']}`, chosen"


def card_latency_line(deployment: dict[str, Any]) -> str:
    """The model card's latency at the deploy target: per call, frames/s, the target, where it was measured,
    the budget it was chosen under, and the fastest confirmed student faster than it (so a reader needing
    more speed knows what it costs)."""
    line = (
        f"**Latency:** {deployment['latency_ms']:.1f} ms per call ({deployment['fps']:.1f} frames/s) with "
        f"{deployment['described']}, measured on {deployment['measured_at']}"
    )
    if deployment.get("budget_ms") is not None:
        line += f"; chosen under a {deployment['budget_ms']:g} ms budget"
    alternative = deployment.get("fastest_alternative")
    if alternative:
        line += (
            f" (fastest confirmed alternative: {alternative['backbone']}, {alternative['config']}, "
            f"{alternative['latency_ms']:.1f} ms, mean {alternative['metric']} {alternative['mean']:.4f})"
        )
    return line + "."


def _card_test_table(test: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {s['n']} | {s['dice']:.4f} | {s['iou']:.4f} |" for name, s in test["test_sets"].items()
    )
    mean = test["mean"]
    missing = test.get("missing") or []
    return f"""| test set | images | Dice | IoU |
|---|---|---|---|
{rows}
| **mean** | {mean["n"]} | **{mean["dice"]:.4f}** | **{mean["iou"]:.4f}** |
{("Not evaluated (absent): " + ", ".join(missing)) if missing else ""}"""


def _card_onnx_line(onnx_check: dict[str, Any]) -> str:
    return (
        f"`{ONNX_FILENAME}` (dynamic batch, opset {onnx_check['opset']}), max |ONNX − PyTorch| = "
        f"{onnx_check['max_abs_diff']:.2e} on {onnx_check['checked_on']}"
    )


def _card_runtime_line(onnx_check: dict[str, Any]) -> str:
    speed = onnx_check["cpu_images_per_s_batch1"]
    return (
        f"**Recommended runtime: {onnx_check['recommended_runtime']}** — measured at export on "
        f"this machine's CPU, batch 1: "
        + ", ".join(f"{k} {v:.1f} img/s" for k, v in speed.items())
        + " (bench/inference.py measures batch 1 and 8, and CUDA where present)"
    )


def _card_int8_line(int8: dict[str, Any]) -> str:
    if not int8["written"]:
        return f"int8: none; {int8['summary'].removeprefix('int8: ')}"
    int8_speed = int8["cpu_images_per_s_batch1"]
    return (
        f"int8: `{INT8_ONNX_FILENAME}` (ONNX Runtime static quantization, {int8['format']}, "
        f"{int8['weights']} weights, {int8['activations']} from {int8['calibration_images']} "
        f"training images): validation Dice {int8['val_dice_int8']:.4f} vs fp32 "
        f"{int8['val_dice_fp32']:.4f} on {int8['val_images']} images (kept: it may lose at most "
        f"{INT8_MAX_DICE_DROP}); CPU batch 1: int8 {int8_speed['onnxruntime-int8']:.1f} img/s, fp32 "
        f"{int8_speed['onnxruntime']:.1f} img/s ({int8['int8_over_fp32_batch1']:.2f}x); use it with "
        f"`--runtime onnxruntime-int8`"
    )


def run_metrics(state: dict[str, Any], test: dict[str, Any]) -> ExportMetrics:
    """Metrics of a single training run's best.pt (no sweep): its best epoch and the given test report."""
    best = best_epoch(state.get("history") or [])
    if best is None:
        raise UserError(f"{state['path']}: checkpoint has no training history; export a best.pt written by core.train")
    return ExportMetrics(
        best_val_dice=float(best["val_dice"]),
        best_val_iou=float(best["val_iou"]),
        best_epoch=int(best["epoch"]),
        test=test,
        synthetic_data=bool(state.get("synthetic_data")),
    )


def export_run(checkpoint: str | Path, out: str | Path, device: str = "auto") -> dict[str, Any]:
    """Export the best weights of one core.train run; test scores from the run's test_metrics.json, or
    computed on its data_root's test sets when that file is absent."""
    from core.evaluate import evaluate_test_sets

    model, state = load_model(str(checkpoint))
    # Checked again when written; here so that a refused --out does not wait for the test sets' scores.
    check_output(out, EXPORT_KIND, [("checkpoint folder", Path(state["path"]).parent)])
    cfg = state["config"]
    saved = resolve_checkpoint_path(checkpoint).parent / "test_metrics.json"
    if saved.is_file():
        test = json.loads(saved.read_text())
    else:
        test = evaluate_test_sets(
            model, discover(cfg["data_root"]), cfg["img_size"], cfg["batch_size"], resolve_device(device)
        )
    return export_model(model, state, run_metrics(state, test), out)


def _reference_image(cfg: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """The first test image, preprocessed exactly as evaluation does; random noise if none is reachable."""
    try:
        data = discover(cfg["data_root"])
        for pairs in data.test_sets.values():
            image = preprocess(read_image(pairs[0].image), cfg["img_size"])
            return normalize(image[None]), f"test image {pairs[0].image.name}"
    except UserError:
        pass
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, cfg["img_size"], cfg["img_size"], generator=generator), "a random input"


def _opset(path: Path) -> int:
    import onnx

    imports = onnx.load(str(path), load_external_data=False).opset_import
    return max(o.version for o in imports if o.domain in ("", "ai.onnx"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.export", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="a run folder or its best.pt (core.train)")
    parser.add_argument(
        "--out",
        required=True,
        help="export folder to write (an earlier export there is replaced, anything else refused)",
    )
    parser.add_argument("--device", default="auto", help="for scoring test sets when the run has no scores")
    args = parser.parse_args(argv)
    with cli_errors():
        record = export_run(args.checkpoint, args.out, args.device)
        files = EXPORT_FILES + ((INT8_ONNX_FILENAME,) if record["int8"]["written"] else ())
        print(
            f"exported {args.checkpoint} to {args.out}: {', '.join(files)} "
            f"(max |ONNX - PyTorch| {record['onnx']['max_abs_diff']:.2e}); "
            f"test mean Dice {record['test']['mean']['dice']:.4f}"
        )


if __name__ == "__main__":
    main()
