"""Inference speed of the exported student: images/s at 320 px, batch 1 and 8, PyTorch eager vs.
ONNX Runtime on the CPU (and both on CUDA when a GPU is present). The faster CPU runtime is what an
export's model card recommends.

Uses an exported folder (`--export results/<sweep>/export`) or, without one, a randomly initialised
student of the default architecture (speed does not depend on the weights).

    python bench/inference.py [--export DIR] [--img-size 320]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import torch  # noqa: E402

from core.export import inference_speed, write_onnx  # noqa: E402
from core.models import build_model, load_model  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", help="an exported model folder (model.pt + model.onnx)")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    size = args.img_size
    with tempfile.TemporaryDirectory() as tmp:
        if args.export:
            model, state = load_model(args.export)
            label = f"exported {state['architecture']['arch']}/{state['architecture']['encoder']} from {args.export}"
        else:
            model = build_model({"arch": "Unet", "encoder": "mobilenet_v2"}, encoder_weights=None).eval()
            label = "random-init Unet/mobilenet_v2 (no export given)"
        onnx_path = Path(tmp) / "model.onnx"
        write_onnx(model, size, onnx_path)
        print(f"{label}; {size}px; CPU threads {torch.get_num_threads()}; median of {args.repeats} calls")
        fields = []
        for batch in (1, 8):
            speed = inference_speed(model, onnx_path, size, batch, args.repeats)
            if torch.cuda.is_available():
                speed.update(cuda_speed(model, onnx_path, size, batch, args.repeats))
                model = model.cpu()
            ratio = speed["onnxruntime"] / speed["pytorch"]
            print(f"batch {batch}: " + "  ".join(f"{k} {v:7.1f} img/s" for k, v in speed.items())
                  + f"  (onnxruntime/pytorch on CPU x{ratio:.2f})")
            fields += [f"{k}_b{batch}={v:.1f}" for k, v in speed.items()] + [f"ort_over_torch_b{batch}={ratio:.2f}"]
        print("RESULT " + " ".join(fields) + f" img_size={size}")


if __name__ == "__main__":
    main()
