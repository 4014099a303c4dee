"""Measured latency of a student architecture at a deployment target (runtime, device, size, threads): built
with random weights, exported and timed here, and cached per architecture, target and machine.

No Ray: a sweep's driver measures CPU targets before trials start, a GPU worker measures CUDA ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch

from core.config import ImgSize
from core.data import SamplePair
from core.errors import UserError
from core.export import ONNX_FILENAME, inference_speed, write_onnx
from core.files import default_cache_dir, write_file_atomic
from core.models import STUDENT_ARCH, build_model
from core.quantize import INT8_ONNX_FILENAME, calibration_batches, quantize
from core.validation import Integer, Number, above, at_least, build, one_of

RUNTIMES = ("onnxruntime", "onnxruntime-int8", "torch")
DEVICES = ("cpu", "cuda")
RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime fp32", "onnxruntime-int8": "ONNX Runtime int8", "torch": "PyTorch eager"}
# Part of every cache key: bump it when how latency is measured changes, so older numbers are not reused.
LATENCY_METHOD_VERSION = "1"
LATENCY_FOLDER = "latency"


@dataclass(frozen=True)
class DeployTarget:
    """Where a student will run. `img_size` None: the caller supplies it (the trial's img_size);
    `threads` 0: the runtime's default (ONNX Runtime: one per physical core; PyTorch: its own)."""

    runtime: Annotated[str, one_of(RUNTIMES)] = "onnxruntime"
    device: Annotated[str, one_of(DEVICES)] = "cpu"
    img_size: ImgSize | None = None
    batch: Annotated[Integer, at_least(1)] = 1
    threads: Annotated[Integer, at_least(0, "0: the runtime's default")] = 0
    latency_budget_ms: Annotated[Number, above(0, "milliseconds")] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, source: str, at: str = "") -> DeployTarget:
        """Validate a YAML `deploy:` mapping (None, `deploy:` with nothing under it: every default); every
        mistake is one UserError naming `source` and the key (dotted under `at`)."""
        return build(cls, raw, source, at)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line, e.g. "ONNX Runtime int8, CPU, 4 threads, 352 px, batch 1"."""
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}" if self.threads else "default threads"
        size = f"{self.img_size} px" if self.img_size else "the trial's img_size"
        budget = f", budget {self.latency_budget_ms:g} ms" if self.latency_budget_ms is not None else ""
        return f"{RUNTIME_NAMES[self.runtime]}, {self.device.upper()}, {threads}, {size}, batch {self.batch}{budget}"


@dataclass(frozen=True)
class LatencyRecord:
    """Milliseconds per call at the target's batch; where it was measured; whether it came from the cache."""

    ms: float
    measured_at: str
    cached: bool
    key: str


def student_arch(backbone: str) -> dict[str, str]:
    """The architecture a checkpoint records for a student on `backbone` (core.models.architecture)."""
    return {"arch": STUDENT_ARCH, "encoder": backbone}


def measure_latency(
    arch: dict[str, str], target: DeployTarget, calibration: Sequence[SamplePair] | None = None, repeats: int = 20
) -> float:
    """Median milliseconds per call of `arch` (random weights: latency does not depend on them) at `target`,
    timed here. int8 needs `calibration` (a few training images): its activation ranges come from them."""
    if target.img_size is None:
        raise ValueError("measure_latency needs target.img_size; the caller fills in the trial's")
    if target.runtime == "onnxruntime-int8" and not calibration:
        raise ValueError("an onnxruntime-int8 target needs calibration images (a few training images)")
    _require_device(target)
    model = build_model(arch, encoder_weights=None).eval()
    if target.runtime == "torch":
        with _torch_threads(target.threads):
            speed = inference_speed(model, None, target.img_size, target.batch, repeats, device=target.device)
        return 1000.0 * target.batch / speed["pytorch"]
    fp32 = _EXPORTS.onnx(arch, target.img_size, model)
    int8 = None
    if target.runtime == "onnxruntime-int8":
        int8 = fp32.with_name(INT8_ONNX_FILENAME)
        if not int8.exists():
            assert calibration, "checked on entry"
            quantize(fp32, int8, calibration_batches(calibration, target.img_size))
    speed = inference_speed(
        None,
        None if int8 else fp32,
        target.img_size,
        target.batch,
        repeats,
        int8_path=int8,
        threads=target.threads,
        device=target.device,
    )
    return 1000.0 * target.batch / speed[target.runtime]


def cached_latency(
    arch: dict[str, str],
    target: DeployTarget,
    calibration: Sequence[SamplePair] | None = None,
    cache_dir: str | Path | None = None,
    repeats: int = 20,
) -> LatencyRecord:
    """`measure_latency`, once per (architecture, target, machine): later calls read
    <cache root>/latency/<key>.json (cache root: `cache_dir`, else $POLYP_KD_TUNE_CACHE or ~/.cache/polyp-kd-tune)."""
    key = latency_key(arch, target)
    path = Path(cache_dir or default_cache_dir()) / LATENCY_FOLDER / f"{key}.json"
    stored = _read_record(path)
    if stored is not None:
        return LatencyRecord(ms=stored["ms"], measured_at=stored["measured_at"], cached=True, key=key)
    # Two processes asking for the same key at once both measure and the last write wins: harmless, and a
    # sweep asks before its trials start (CPU targets on the driver), so it does not happen in practice.
    ms = measure_latency(arch, target, calibration, repeats)
    measured_at = where_measured(target.device)
    record = {
        "ms": ms,
        "measured_at": measured_at,
        "key": key,
        "arch": arch,
        "target": target.to_dict(),
        "machine": machine_fingerprint(target.device),
        "repeats": repeats,
        "host": socket.gethostname(),
        # A busy machine reads slower; the load at the time says how far to trust the number.
        "load_average": round(os.getloadavg()[0], 2),
        "measured_unix": round(time.time(), 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, json.dumps(record, indent=2))
    return LatencyRecord(ms=ms, measured_at=measured_at, cached=False, key=key)


def latency_key(arch: dict[str, str], target: DeployTarget) -> str:
    """Hash of what a latency depends on: architecture, img_size, runtime, device, threads, batch and the
    machine (CPU model, cores, GPU, library versions). The budget is not among them: it judges, not measures."""
    fields = {
        "method": LATENCY_METHOD_VERSION,
        "arch": dict(sorted(arch.items())),
        "img_size": target.img_size,
        "runtime": target.runtime,
        "device": target.device,
        "threads": target.threads,
        "batch": target.batch,
        "machine": machine_fingerprint(target.device),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def machine_fingerprint(device: str) -> dict[str, Any]:
    """What makes this machine's numbers its own: a runtime's new version can change a kernel's speed."""
    import onnxruntime
    import segmentation_models_pytorch
    import timm

    return {
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "cores": _cores(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
        "timm": timm.__version__,
    }


def where_measured(device: str) -> str:
    """E.g. "this machine (CPU: Intel(R) Xeon(R) Processor, 2 cores)"."""
    if device == "cuda":
        return f"this machine (GPU: {torch.cuda.get_device_name()})"
    return f"this machine (CPU: {cpu_model()}, {_cores()} cores)"


def cpu_model() -> str:
    """/proc/cpuinfo's "model name" (Linux); elsewhere what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cores() -> int:
    # The CPUs this process may run on (a container's or taskset's share), not the host's count.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _LatestExport:
    """The fp32 ONNX model of the last architecture asked for, so that its fp32 and int8 targets export once.
    Only one is kept: a student's ONNX file is up to ~100 MB, and callers ask architecture by architecture."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.folder: Path | None = None

    def onnx(self, arch: dict[str, str], img_size: int, model: torch.nn.Module) -> Path:
        key = (tuple(sorted(arch.items())), img_size)
        if key != self.key or self.folder is None or not (self.folder / ONNX_FILENAME).is_file():
            self.clear()
            self.folder = Path(tempfile.mkdtemp(prefix="polyp-kd-tune-latency-"))
            write_onnx(model, img_size, self.folder / ONNX_FILENAME)
            self.key = key
        return self.folder / ONNX_FILENAME

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.key = self.folder = None


_EXPORTS = _LatestExport()


def _require_device(target: DeployTarget) -> None:
    if target.device != "cuda":
        return
    if not torch.cuda.is_available():
        raise UserError(
            f"deploy target '{target.describe()}': CUDA target but no GPU here; measure it on a "
            f"GPU worker or set device: cpu"
        )
    if target.runtime != "torch":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError(
                f"deploy target '{target.describe()}': CUDA target but this ONNX Runtime has no "
                f"CUDA provider (install onnxruntime-gpu), or use runtime: torch"
            )


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    # torch's thread count is process-wide: set it for the measurement only, then put it back.
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _read_record(path: Path) -> dict[str, Any] | None:
    """A stored measurement, or None when absent or unreadable (then it is measured again and rewritten)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("ms"), (int, float)) and record["ms"] > 0
    return record if ok and isinstance(record.get("measured_at"), str) else None
