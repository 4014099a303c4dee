"""Stage 0 of a sweep with a `deploy:` target: the latency of every student backbone the space names, measured
at that target (core/latency.py: once per architecture, target and machine, then cached), and the budget
checked before anything trains. A CPU target is timed on the driver before Ray starts, a CUDA one on a GPU
worker (the driver may have no GPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data import discover
from core.errors import UserError
from core.latency import DeployTarget, LatencyRecord, cached_latency, student_arch
from core.quantize import spread
from tune.records import LATENCY_FILE, write_json
from tune.space import SearchSpace

CALIBRATION_IMAGES = 8  # int8 activation ranges; more changes the ranges, not the speed


OnGpuWorker = Callable[..., LatencyRecord]  # `on_gpu_worker(fn, *args)`: fn(*args), run where a GPU is


def measure_students(space: SearchSpace, on_gpu_worker: OnGpuWorker | None = None) -> dict[str, dict[str, Any]]:
    """{backbone: {latency_ms, fp32_ms, int8_ms, measured_at, feasible}} at the space's target; an ONNX Runtime
    target is timed in fp32 and int8 both (the front shows both), the budget judged on the target's runtime.
    `on_gpu_worker(fn, *args)` runs a CUDA target's measurement where a GPU is."""
    target = space.deploy
    if target is None:
        raise ValueError(f"{space.source}: measure_students needs a space with a deploy target")
    measure = on_gpu_worker if target.device == "cuda" else _here
    if measure is None:
        raise ValueError("a CUDA target is measured on a GPU worker: pass on_gpu_worker")
    base = space.base_config()
    calibration = spread(discover(base.data_root).train, CALIBRATION_IMAGES)
    runtimes = ["onnxruntime", "onnxruntime-int8"] if target.runtime.startswith("onnxruntime") else [target.runtime]
    out = {}
    for backbone in space.student_backbones():
        times: dict[str, LatencyRecord] = {}
        for runtime in runtimes:
            at = dataclasses.replace(target, runtime=runtime)
            args = (student_arch(backbone), at, calibration, base.cache_dir)
            times[runtime] = measure(cached_latency, *args)
            print(
                f"latency {backbone:<28} {at.describe():<60} {times[runtime].ms:8.1f} ms"
                + (" (cached)" if times[runtime].cached else "")
            )
        ms = times[target.runtime].ms
        out[backbone] = {
            "latency_ms": round(ms, 2),
            "fp32_ms": _ms(times.get("onnxruntime")),
            "int8_ms": _ms(times.get("onnxruntime-int8")),
            "measured_at": times[target.runtime].measured_at,
            "feasible": target.latency_budget_ms is None or ms <= target.latency_budget_ms,
        }
    return out


def check_budget(space: SearchSpace, students: dict[str, dict[str, Any]]) -> None:
    """A space none of whose students meets the budget would train nothing: say so, naming the fastest."""
    target = space.deploy
    if target is None:
        raise ValueError(f"{space.source}: check_budget needs a space with a deploy target")
    budget = target.latency_budget_ms
    if budget is None or any(s["feasible"] for s in students.values()):
        return
    fastest = min(students, key=lambda b: students[b]["latency_ms"])
    raise UserError(
        f"{space.source}: deploy.latency_budget_ms is {budget:g} ms but every student backbone is "
        f"slower at {target.describe()}; the fastest is {fastest} at "
        f"{students[fastest]['latency_ms']:.1f} ms: raise the budget or add a faster backbone"
    )


def write_latencies(sweep_dir: Path, target: DeployTarget, students: dict[str, dict[str, Any]]) -> Path:
    """latency.json: the target, its budget and each student's measured latency (read by selection, report,
    export)."""
    path = sweep_dir / LATENCY_FILE
    write_json({"deploy": target.to_dict(), "students": students}, path)
    return path


def _here(fn: Callable[..., LatencyRecord], *args: Any) -> LatencyRecord:
    return fn(*args)


def _ms(record: LatencyRecord | None) -> float | None:
    return None if record is None else round(record.ms, 2)
