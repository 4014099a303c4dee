"""Inference speed of the exported student: images/s at 320 px, batch 1 and 8, PyTorch eager, ONNX Runtime
fp32 and ONNX Runtime int8 (core/quantize.py) on the CPU (and PyTorch/ONNX Runtime on CUDA when a GPU is
present), plus what int8 costs in validation Dice. Target: int8 >= 1.7x fp32 ONNX Runtime at 320 px.

With an exported folder (`--export results/<sweep>/export`) the int8 model is calibrated on that run's
training images and both models are scored on its validation split, as export does; without one, a randomly
initialised student of the default architecture is timed (speed does not depend on the weights), calibrated
on random inputs, and no Dice is reported. Runtimes take turns call by call, so load changes weigh on all.

    python bench/inference.py [--export DIR] [--img-size 320] [--compare-formats]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch

from core import quantize
from core.config import config_from_dict
from core.data import discover
from core.errors import UserError
from core.export import inference_speed, write_onnx
from core.models import build_model, load_model
from core.split import training_split


def cuda_speed(model: torch.nn.Module, onnx_path: Path, size: int, batch: int, repeats: int) -> dict[str, float]:
    import onnxruntime as ort

    out = {}
    model = model.cuda()
    x = torch.randn(batch, 3, size, size, device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    out["pytorch_cuda"] = batch / statistics.median(times)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
        xs = x.cpu().numpy()
        session.run(None, {"image": xs})
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, {"image": xs})
            times.append(time.perf_counter() - start)
        out["onnxruntime_cuda"] = batch / statistics.median(times)
    return out


def calibration(export: str | None, size: int):
    """(batches, what they are): the export's training images when its data is reachable, else noise."""
    if export:
        _, state = load_model(export)
        cfg = config_from_dict(state["config"], source=f"{export} config")
        try:
            train = training_split(cfg, discover(cfg.data_root).train).train
            pairs = quantize.spread(train, quantize.CALIBRATION_IMAGES)
            return quantize.calibration_batches(pairs, size), f"{len(pairs)} training images of {cfg.data_root}"
        except UserError as err:
            print(f"calibrating on random inputs: {err}")
    rng = np.random.default_rng(0)
    return iter([rng.standard_normal((8, 3, size, size), dtype=np.float32) for _ in range(2)]), "random inputs"


def validation_dice(export: str, model: torch.nn.Module, folder: Path) -> dict | None:
    """core.quantize.export_int8 on the export's own size, data and split: fp32 and int8 validation Dice."""
    _, state = load_model(export)
    cfg = config_from_dict(state["config"], source=f"{export} config")
    fp32 = folder / f"val-{cfg.img_size}.onnx"
    write_onnx(model, cfg.img_size, fp32)
    record = quantize.export_int8(fp32, cfg, state.get("split"), folder / f"val-{cfg.img_size}.int8.onnx")
    print(record["summary"])
    return record if "val_dice_drop" in record else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", help="an exported model folder (model.pt + model.onnx)")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default, one per physical core)"
    )
    parser.add_argument(
        "--compare-formats", action="store_true", help="also time int8 in QOperator format (QDQ is what export writes)"
    )
    args = parser.parse_args()
    size = args.img_size
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.export:
            model, state = load_model(args.export)
            label = f"exported {state['architecture']['arch']}/{state['architecture']['encoder']} from {args.export}"
        else:
            model = build_model({"arch": "Unet", "encoder": "mobilenet_v2"}, encoder_weights=None).eval()
            label = "random-init Unet/mobilenet_v2 (no export given)"
        onnx_path = folder / "model.onnx"
        write_onnx(model, size, onnx_path)
        formats = ["QDQ", "QOperator"] if args.compare_formats else [quantize.QUANT_FORMAT]
        int8_paths = {}
        for quant_format in formats:
            batches, source = calibration(args.export, size)
            int8_paths[quant_format] = folder / f"model.int8.{quant_format}.onnx"
            quantize.quantize(onnx_path, int8_paths[quant_format], batches, quant_format)
        print(
            f"{label}; {size}px; int8 ({', '.join(formats)}) calibrated on {source}; threads: torch "
            f"{torch.get_num_threads()}, ONNX Runtime {args.threads or 'default'}; median of {args.repeats} "
            f"calls; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        fields, ratios = [], {}
        for batch in (1, 8):
            speed = inference_speed(
                model,
                onnx_path,
                size,
                batch,
                args.repeats,
                int8_path=int8_paths[quantize.QUANT_FORMAT],
                threads=args.threads,
            )
            for quant_format in formats:
                if quant_format != quantize.QUANT_FORMAT:
                    other = inference_speed(
                        None, onnx_path, size, batch, args.repeats, int8_paths[quant_format], threads=args.threads
                    )
                    speed[f"onnxruntime-int8-{quant_format}"] = other["onnxruntime-int8"]
                    speed[f"onnxruntime-fp32-beside-{quant_format}"] = other["onnxruntime"]
            if torch.cuda.is_available():
                speed.update(cuda_speed(model, onnx_path, size, batch, args.repeats))
                model = model.cpu()
            ratios[batch] = speed["onnxruntime-int8"] / speed["onnxruntime"]
            print(
                f"batch {batch}: "
                + "  ".join(f"{k} {v:.1f}" for k, v in speed.items())
                + f" img/s  (onnxruntime/pytorch x{speed['onnxruntime'] / speed['pytorch']:.2f}, "
                f"int8/fp32 x{ratios[batch]:.2f})"
            )
            fields += [f"{k.replace('-', '_')}_b{batch}={v:.1f}" for k, v in speed.items()]
        dice = validation_dice(args.export, model.cpu(), folder) if args.export else None
        drop = dice["val_dice_drop"] if dice else math.nan
        if dice:
            fields += [
                f"val_dice_fp32={dice['val_dice_fp32']:.4f}",
                f"val_dice_int8={dice['val_dice_int8']:.4f}",
                f"val_images={dice['val_images']}",
            ]
        else:
            print("no validation Dice: pass --export with reachable data")
        print(
            f"RESULT int8_over_fp32_b1={ratios[1]:.2f} int8_over_fp32_b8={ratios[8]:.2f} "
            f"int8_val_dice_drop={drop:.4f} " + " ".join(fields) + f" img_size={size} "
            f"ort_threads={args.threads} load_average={os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
