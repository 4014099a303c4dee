"""Use a finished sweep: `show` prints its leaderboard, `export` writes the winner as a self-contained
folder (core/export.py: weights, config, metrics, ONNX checked against PyTorch, model card), `predict`
segments new images with an exported model and `demo` serves it as a local web page (core/predict.py,
core/demo.py).

    python -m tune.best show [--sweep DIR]
    python -m tune.best export [--sweep DIR] [--out DIR] [--latency-budget-ms MS] [--no-wandb]
    python -m tune.best predict --model DIR IMAGE_OR_FOLDER... --out DIR
    python -m tune.best demo --model DIR [--port 7860] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.data import discover_test_sets
from core.errors import UserError, cli_errors
from core.evaluate import evaluate_test_sets, format_table
from core.export import EXPORT_FILES, ExportMetrics, export_model, run_metrics
from core.latency import DeployTarget
from core.models import load_model, resolve_device
from core.predict import RUNTIMES, Predictor, predict_files
from core.quantize import INT8_ONNX_FILENAME
from tune.front import best_within
from tune.objective import Objective
from tune.records import (
    BEST_FILE,
    CHECKPOINT_FILE,
    EXPORT_DIRNAME,
    SPACE_FILE,
    SWEEP_FILE,
    Confirmed,
    find_sweep,
    read_best,
    read_leaderboard,
    resolve,
)
from tune.report.format import estimate_text, fmt, verdict_details
from tune.report.tables import format_confirmation, format_front, format_leaderboard, format_test_scores
from tune.space import load_space
from tune.tracking.artifacts import artifact_name, log_model_artifact
from tune.tracking.mode import resolve_mode

SWEEP_MARKERS = (SWEEP_FILE, SPACE_FILE, BEST_FILE)  # any of them makes a folder a sweep's
PREDICT_EPILOG = """Writes OUT/masks/<stem>.png (0/255, each image's original size), OUT/overlays/<stem>.png
(the image with the predicted polyp tinted red and outlined) and OUT/predictions.csv (polyp area per image).
OUT is written whole when the run ends; an earlier prediction folder there is replaced, anything else is
refused, as is an OUT that is, holds or lies inside an input, the model folder or a sweep folder.

Inputs that cannot be used (not an image, an unreadable or truncated file, an empty folder, a missing path)
are skipped with one `error:` line each; the other images are still written, and the exit code is then 2.
A missing or unreadable model folder is one line and exit code 2 before anything is written."""


@dataclass(frozen=True)
class Winner:
    """What export writes: the sweep's winner as best.json records it (or, under a latency budget, the best
    confirmed student within it): its checkpoint and how it was chosen and scored."""

    checkpoint: Path
    metrics: ExportMetrics
    note: str | None = None  # one line saying which student is exported instead of best.json's winner, and why


def read_winner(sweep_dir: Path) -> Winner:
    """The one place that reads best.json (paths in it are relative to the sweep folder)."""
    path = sweep_dir / BEST_FILE
    best = read_best(sweep_dir)
    try:
        verdict = best["kd_vs_baseline"]
        return Winner(
            checkpoint=Path(resolve(best["checkpoint"], sweep_dir)),
            metrics=ExportMetrics(
                best_val_dice=best["best_val_dice"],
                best_val_iou=best["best_val_iou"],
                best_epoch=best["best_epoch"],
                test=best["test"],
                synthetic_data=bool(best["synthetic_data"]),
                sweep=best["sweep"],
                trial_id=best["trial_id"],
                objective=best["objective"]["metric"],
                params=best["params"],
                verdict=verdict["sentence"] if verdict else None,
                selection=_selection(best),
            ),
        )
    except KeyError as err:
        raise UserError(
            f"{path}: no {err} entry (written by another version of tune.search); export the "
            f"winner's checkpoint with `python -m core.export --checkpoint CKPT --out DIR`"
        ) from None


def _selection(best: dict[str, Any]) -> str | None:
    """How the sweep chose its winner, in words, for the model card."""
    estimate = best.get("estimate")
    if not best.get("confirmation") or not estimate:
        return None
    winner = next(c for c in best["confirmation"] if c["name"] == best["winner"])
    return (
        f"configuration {best['winner']}, chosen by its mean {winner['mean']:.4f} over the selection seeds "
        f"{winner['seeds']} (a maximum over candidates: it overstates); **estimated "
        f"{Objective(**best['objective']).label} "
        f"{estimate_text(estimate)}**; these weights are its best run of those, seed {best['seed']} (the "
        f"validation Dice below is that run's: a selected maximum, not an estimate)"
    )


def show(sweep_dir: Path) -> None:
    winner = read_winner(sweep_dir).metrics
    best = read_best(sweep_dir)
    print(f"sweep {sweep_dir}")
    print(format_leaderboard(read_leaderboard(sweep_dir)))
    objective = Objective(**best["objective"])
    for stage, key in (("selection", "confirmation"), ("verdict", "verdict_runs")):
        if best.get(key):
            print("\n" + format_confirmation([Confirmed.from_dict(c) for c in best[key]], objective, stage))
    print(
        f"\nwinner: {best.get('winner', winner.trial_id)} (run {winner.trial_id}), val Dice "
        f"{winner.best_val_dice:.4f} (this run's)"
    )
    estimate = best.get("estimate")
    if estimate:
        print(f"estimate: {objective.label} {estimate_text(estimate)}")
    label = objective.test_label
    if best.get("winner_test"):
        title = f"winner on the test sets: {label} over its verdict seeds"
        print("\n" + format_test_scores(best["winner_test"], title, "score", winner.synthetic_data))
    else:
        print(format_table(winner.test, title="winner on the test sets"))
    if best.get("test_effect"):
        pair = best["kd_vs_baseline"]["pairs"][0]
        title = f"the teacher on the test sets: {pair[0]} − {pair[1]}, {label} paired by seed"
        print("\n" + format_test_scores(best["test_effect"], title, "delta", winner.synthetic_data))
    if winner.verdict:
        print(f"\nverdict: {winner.verdict}")
        for line in verdict_details(best["kd_vs_baseline"], objective.label):
            print(f"  {line}")
    importance = best.get("importance")
    if importance:
        print(
            f"importance (PED-ANOVA over {importance['trials']} KD trials at epoch {importance['at_epoch']}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in importance["importance"].items())
        )
    if best.get("front"):
        deploy = best["deploy"]
        print(f"\nDice–latency front at {deploy['described']}, measured on {deploy['measured_at']}")
        print(
            format_front(
                best["front"], deploy["target"]["batch"], deploy["target"].get("latency_budget_ms"), objective.label
            )
        )


def export(sweep_dir: Path, out: Path, budget_ms: float | None = None) -> dict[str, Any]:
    """Write the winner (under a latency budget: the best confirmed student within it) to `out` (whole or
    not at all); returns what metrics.json holds. `out` stays clear of the sweep folder (and of any sweep
    folder around it), except for the default <sweep>/export."""
    winner = choose_export(sweep_dir, budget_ms)
    if winner.note:
        print(winner.note)
    model, state = load_model(str(winner.checkpoint))
    sweeps = [("sweep folder", sweep_dir), *sweeps_around(out)]
    return export_model(model, state, winner.metrics, out, protected=sweeps, allowed=[sweep_dir / EXPORT_DIRNAME])


# --- export under a latency budget (best.json's `front`, tune/front.py) -----------------------------------


def choose_export(sweep_dir: Path, budget_ms: float | None = None) -> Winner:
    """What `export` writes: best.json's winner; in a sweep with a deploy target, under `budget_ms` (else the
    target's own budget) the best confirmed student within it, which may be another configuration. Either
    carries its latency at the target for metrics.json and the model card."""
    winner = read_winner(sweep_dir)
    best = read_best(sweep_dir)
    front = best.get("front")
    if not front:
        if budget_ms is not None:
            raise UserError(
                f"this sweep has no deploy target: {sweep_dir / BEST_FILE} has no Dice–latency front "
                f"to choose from; drop --latency-budget-ms, or sweep a space with a `deploy:` section"
            )
        return winner
    budget = budget_ms if budget_ms is not None else best["deploy"]["target"].get("latency_budget_ms")
    own = next((e for e in front if e["backbone"] == best.get("student")), None)
    # Without confirmation (confirm: null) nothing is on the front to choose from; the space's own budget
    # then needs no choice: a configuration over it was never trained, so the winner meets it.
    choose = budget_ms is not None or (budget is not None and any(e["mean"] is not None for e in front))
    entry = best_within(front, budget, Objective(**best["objective"])) if choose else own
    if entry is None:  # the winner's backbone was not timed (a front from another version): as before
        return winner
    if not choose or entry["config"] == best.get("winner"):
        # The winner's configuration: export its verdict run, whose test scores and estimate best.json holds.
        return replace(winner, metrics=replace(winner.metrics, deployment=deployment(best, entry, budget)))
    chosen = front_entry_winner(sweep_dir, best, entry, budget)
    why = (
        f"the winner takes {own['latency_ms']:.1f} ms, over the {budget:g} ms budget"
        if own and own["latency_ms"] > budget
        else f"{entry['config']} has the best confirmed mean within {budget:g} ms"
    )
    took = f", {own['latency_ms']:.1f} ms" if own else ""
    note = (
        f"exporting {entry['config']} ({entry['backbone']}, {entry['latency_ms']:.1f} ms at the target), not "
        f"the sweep's winner {best.get('winner')} ({best.get('student')}{took}): {why}"
    )
    return replace(chosen, note=note)


def front_entry_winner(sweep_dir: Path, best: dict[str, Any], entry: dict[str, Any], budget_ms: float) -> Winner:
    """A confirmed front entry exported as the winner would be: validation metrics from its checkpoint (its
    configuration's best selection run), its parameters and run id, and the test sets scored here (best.json
    holds only the winner's scores; they are reported, never used to choose)."""
    checkpoint = Path(resolve(entry["checkpoint"], sweep_dir))
    if checkpoint.is_dir():  # a trial's checkpoint folder: the trainer state is the file inside
        checkpoint = checkpoint / CHECKPOINT_FILE
    model, state = load_model(str(checkpoint))
    cfg = state["config"]
    try:
        data = discover_test_sets(cfg["data_root"])
    except UserError as err:
        raise UserError(
            f"{entry['config']} ({entry['backbone']}) is exported with its test-set scores, computed "
            f"here (best.json holds only the winner's): {err}"
        ) from None
    test = evaluate_test_sets(model, data, cfg["img_size"], cfg["batch_size"], resolve_device("auto"))
    run_id, seeds, seed = _selection_run(best, entry)
    lo, hi = entry["ci95"] or (None, None)
    selection = (
        f"configuration {entry['config']} ({entry['backbone']}), the best confirmed student within a "
        f"{budget_ms:g} ms latency budget: its mean {fmt(entry['mean'])} (95% CI {fmt(lo)} … {fmt(hi)}) "
        f"over the selection seeds {seeds} (a maximum over candidates, not re-estimated on fresh seeds: "
        f"it overstates); these weights are its best run of those, seed {seed} (the validation Dice "
        f"below is that run's: a selected maximum, not an estimate)"
    )
    metrics = replace(
        run_metrics(state, test),
        synthetic_data=bool(best["synthetic_data"]),
        sweep=best["sweep"],
        trial_id=run_id,
        objective=best["objective"]["metric"],
        params=entry["params"] or {},
        selection=selection,
        deployment=deployment(best, entry, budget_ms, instead_of=best["winner"]),
    )
    return Winner(checkpoint=checkpoint, metrics=metrics)


def _selection_run(best: dict[str, Any], entry: dict[str, Any]) -> tuple[str, list[int] | str, int | str]:
    """The run id, the selection seeds and the seed of the run whose checkpoint a front entry names (from
    best.json's `confirmation`); the search trial's id and "?" where it is not recorded there."""
    record = next((c for c in best.get("confirmation") or [] if c["name"] == entry["config"]), None)
    if record is None or entry["checkpoint"] not in record["checkpoints"]:
        return entry["trial"], "?", "?"
    i = record["checkpoints"].index(entry["checkpoint"])
    return record["trial_ids"][i], record["seeds"], record["seeds"][i]


def deployment(
    best: dict[str, Any], entry: dict[str, Any], budget_ms: float | None, instead_of: str | None = None
) -> dict[str, Any]:
    """metrics.json's `deployment`: the target, the exported student's latency there and frames per second,
    the budget it was chosen under, and the fastest confirmed student faster than it, if any (what more speed
    would cost)."""
    deploy = best["deploy"]
    target = deploy["target"]
    # The budget is said apart ("chosen under a N ms budget"): the description is the target alone.
    described = DeployTarget.from_dict({**target, "latency_budget_ms": None}, f"{BEST_FILE}: deploy.target").describe()
    faster = [e for e in best["front"] if e["mean"] is not None and e["latency_ms"] < entry["latency_ms"]]
    fastest = min(faster, key=lambda e: e["latency_ms"], default=None)
    alternative = (
        None
        if fastest is None
        else {
            "backbone": fastest["backbone"],
            "config": fastest["config"],
            "latency_ms": fastest["latency_ms"],
            "mean": fastest["mean"],
            "metric": Objective(**best["objective"]).label,
        }
    )
    return {
        "target": target,
        "described": described,
        "backbone": entry["backbone"],
        "latency_ms": entry["latency_ms"],
        "fps": round(1000.0 / entry["latency_ms"] * target["batch"], 1),
        "budget_ms": budget_ms,
        "measured_at": entry.get("measured_at") or deploy.get("measured_at"),
        "fastest_alternative": alternative,
        "instead_of": instead_of,
    }


def log_export(sweep_dir: Path, out: Path, metrics: dict[str, Any]) -> None:
    """Log the written export as the sweep's W&B model artifact when W&B is on for the sweep (its space's
    `wandb` settings, as tracking/mode.py resolves them here and now). The export is already written: W&B
    failing is one warning line, never a failed export."""
    try:
        space = load_space(sweep_dir / SPACE_FILE)
        target = resolve_mode(space.wandb.mode, getattr(space.wandb, "entity", None))
        if not target.on:
            return
        sweep = metrics.get("sweep") or space.name
        where = log_model_artifact(
            out, sweep, space.wandb.project, target.entity, target.mode, space.wandb.group or space.name, sweep_dir
        )
    except Exception as err:  # noqa: BLE001 - W&B (network, login, its service) must not undo a written export
        print(
            f"warning: W&B did not log the export ({type(err).__name__}: {err}); {out} is complete without it",
            file=sys.stderr,
        )
        return
    name = f"{artifact_name(sweep)}-student (aliases best, {artifact_name(sweep)})"
    if target.mode == "offline":
        print(f"W&B: model artifact {name} logged offline in {where}; upload it with `wandb sync {where}`")
    else:
        print(f"W&B: model artifact {name} logged to {where}")


def sweeps_around(*paths: str | Path) -> list[tuple[str, Path]]:
    """("sweep folder", folder) for each sweep folder holding one of `paths` (or being one): an output there
    would write into, or replace, what a sweep wrote."""
    found = []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        for folder in (resolved, *resolved.parents):
            if any((folder / name).is_file() for name in SWEEP_MARKERS) and folder not in found:
                found.append(folder)
    return [("sweep folder", folder) for folder in found]


def predict(args: argparse.Namespace) -> int:
    """Masks and overlays for every input image; the exit code is 2 when any input could not be used."""
    predictor = Predictor(args.model, runtime=args.runtime, device=args.device)
    run = predict_files(
        predictor,
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        report=lambda line: tqdm.write(f"error: {line}", file=sys.stderr),
        protected=sweeps_around(args.model, args.out),
    )
    print(run.summary())
    return 2 if run.problems else 0


def demo(args: argparse.Namespace) -> None:
    port = demo_port(args.host, args.port)  # before gradio's seconds of importing, and before the model loads
    auth = demo_auth(args.host, args.auth)
    from core.demo import build_demo, launch  # gradio takes seconds to import: only for this command

    predictor = Predictor(args.model, runtime=args.runtime, device=args.device)
    where = f" at http://{args.host}:{port}/" if port is not None else ""
    print(f"serving {predictor.describe()}{where}; Ctrl-C stops it", flush=True)
    launch(build_demo(predictor), host=args.host, port=port, auth=auth)


def demo_auth(host: str, auth: str | None) -> tuple[str, str] | None:
    """(user, password) from --auth USER:PASS; required when the demo listens beyond this machine."""
    if auth is None:
        if not _is_loopback(host):
            raise UserError(
                f"--host {host}: the demo would be open to your network without a login; pass --auth USER:PASS "
                f"(or serve on 127.0.0.1)"
            )
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise UserError("--auth: expected USER:PASS, both not empty")
    return user, password


def _is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


def demo_port(host: str, port: int | None) -> int | None:
    """The port the demo will serve on: None lets Gradio take the first free one from 7860, 0 is a free
    port chosen here, any other must be free (one line naming it, not Gradio's traceback)."""
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a port; pass one from 1 to 65535, or 0 for a free one")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(
            f"--host {host}: not an address of this machine; pass 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    with socket.socket(family, kind) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by an earlier demo is free for it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} is in use; pass another --port, or --port 0 for a free one") from None
            raise UserError(
                f"--host {host} --port {port}: cannot listen there ({err.strerror}); pass another "
                f"--port, or --port 0 for a free one"
            ) from None
        return probe.getsockname()[1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tune.best", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("show", "print the leaderboard and the winner"),
        ("export", "write the winning model to a folder"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--sweep", help="sweep folder or name (default: the newest finished one in results/)")
        if name == "export":
            p.add_argument("--out", help="output folder (default: <sweep>/export)")
            p.add_argument(
                "--latency-budget-ms",
                type=float,
                metavar="MS",
                help="a sweep with a deploy target: export the best confirmed student at or under MS "
                "ms at the target (default: the target's latency_budget_ms; none: the winner)",
            )
            p.add_argument(
                "--no-wandb",
                action="store_true",
                help="do not log the export as a W&B model artifact (logged when the sweep's W&B is on)",
            )
    for name, text in (
        ("predict", "segment new images with an exported model"),
        ("demo", "serve an exported model as a local Gradio web demo"),
    ):
        p = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=PREDICT_EPILOG if name == "predict" else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--model", required=True, help="an export folder (tune.best export / core.export)")
        p.add_argument(
            "--runtime",
            choices=RUNTIMES,
            default="auto",
            help="auto: ONNX Runtime when the folder has model.onnx and no CUDA GPU is visible",
        )
        p.add_argument("--device", default="auto", help="for the PyTorch runtime: auto, cpu, cuda, mps")
        if name == "predict":
            p.add_argument(
                "inputs",
                nargs="+",
                metavar="IMAGE_OR_FOLDER",
                help="image files and/or folders of images (not searched recursively)",
            )
            p.add_argument("--out", required=True, help="output folder")
            p.add_argument("--batch-size", type=int, default=8)
        else:
            p.add_argument(
                "--host",
                default="127.0.0.1",
                help="address to listen on (0.0.0.0 exposes the demo to your network: --auth then)",
            )
            p.add_argument(
                "--port", type=int, help="port (default: the first free one from 7860; 0: any free one, printed)"
            )
            p.add_argument("--auth", help="USER:PASS login; required when --host is not this machine (127.0.0.1)")
    args = parser.parse_args(argv)
    with cli_errors():
        if args.command == "predict":
            if args.batch_size < 1:
                raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
            code = predict(args)
            if code:
                raise SystemExit(code)
            return
        if args.command == "demo":
            demo(args)
            return
        sweep_dir = find_sweep(args.sweep)
        if args.command == "show":
            show(sweep_dir)
            return
        if args.latency_budget_ms is not None and not args.latency_budget_ms > 0:
            raise UserError(f"--latency-budget-ms {args.latency_budget_ms:g}: must be a number of milliseconds > 0")
        out = Path(args.out) if args.out else sweep_dir / EXPORT_DIRNAME
        metrics = export(sweep_dir, out, args.latency_budget_ms)
        mean = metrics["test"]["mean"]
        files = EXPORT_FILES + ((INT8_ONNX_FILENAME,) if metrics.get("int8", {}).get("written") else ())
        print(
            f"exported trial {metrics['trial_id']} of {sweep_dir} to {out}: {', '.join(files)} "
            f"(max |ONNX - PyTorch| {metrics['onnx']['max_abs_diff']:.2e}); test mean Dice {mean['dice']:.4f}"
        )
        if not args.no_wandb:
            log_export(sweep_dir, out, metrics)


if __name__ == "__main__":
    main()
