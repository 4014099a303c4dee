"""The sweep CLI: prepare (data, teacher, caches) -> search (Ray Tune + Optuna + ASHA, with a no-teacher
control arm) -> select (the best configurations retrained over seeds) -> verdict -> finish (report).

    python -m tune.search --space kd.yaml [--name N] [--num-samples K] [--resume [--extend]] [--address ADDR]
                          [--set key=value ...] [--plan] [-v]

Writes results/<sweep>/ (its layout: tune/records.py). A sweep is bound to its space: --resume with a changed
space exits 2 listing the changes (--resume --extend runs more trials, nothing else may change). The console
shows the stages and one line per trial start and end; Ray's own output goes to <sweep>/ray.log (-v: here
too). Ctrl-C (or SIGTERM) stops it resumably: exit 130 (143), no winner written. The stages live in
tune/sweep/; this module only reads the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import parse_overrides
from core.errors import UserError, cli_errors
from tune.cluster import storage
from tune.cluster.plan import print_plan
from tune.space import SearchSpace, check_sweep_name, load_space
from tune.sweep.pipeline import run_sweep
from tune.sweep.prepare import prepare_data
from tune.sweep.signals import StopSignals


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tune.search", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--space", required=True, help="search-space YAML: a path, or a name in search_spaces/")
    parser.add_argument("--name", help="sweep name (default: the space's name)")
    parser.add_argument("--num-samples", type=int, help="number of search trials (overrides the space)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep of this name (with the space it started with)",
    )
    parser.add_argument(
        "--extend", action="store_true", help="with --resume: the space raises search.num_samples; run the extra trials"
    )
    parser.add_argument("--address", help="join a running Ray cluster (default: $RAY_ADDRESS, else local)")
    parser.add_argument(
        "--storage",
        default="results",
        help="folder or URI (s3://, gs://) that holds <sweep>/; a cluster needs one all nodes reach",
    )
    parser.add_argument(
        "--local-results",
        default="results",
        help="with a URI --storage: local folder for the report and the winner (default results)",
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config key for every trial; repeatable",
    )
    parser.add_argument(
        "--teacher",
        metavar="PATH_OR_URI",
        help="teacher checkpoint (file, folder, or s3://, gs://, file:// URI): overrides the space's",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Ray's output (its trial tables and logs) here too; it always goes to <sweep>/ray.log",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="run nothing: expected trial-epochs, wall time and cost on cluster.yaml's worker types",
    )
    parser.add_argument("--workers", type=int, help="with --plan: worker nodes (default: 1 and each type's maximum)")
    parser.add_argument(
        "--epoch-seconds",
        type=float,
        help="with --plan: seconds per trial epoch on the target GPU (default: measured here)",
    )
    args = parser.parse_args(argv)
    # From the first step: the data check and demo data stop on a signal too.
    with StopSignals().installed() as signals, cli_errors():
        space = space_from_args(args)
        if args.plan:
            if args.epoch_seconds is None:
                prepare_data(space)  # an epoch is measured on the space's data
            print_plan(space, args.workers, args.epoch_seconds)
            return
        if args.workers is not None or args.epoch_seconds is not None:
            raise UserError("--workers and --epoch-seconds go with --plan")
        if args.extend and not args.resume:
            raise UserError("--extend continues a sweep: use it with --resume")
        try:
            data = prepare_data(space)
            run_sweep(
                space,
                storage.resolve(args.storage),
                args.resume,
                args.address,
                args.num_cpus,
                Path(args.local_results),
                args.extend,
                signals,
                args.verbose,
                data,
            )
        except KeyboardInterrupt as err:
            detail = f" ({err})" if str(err) else ""
            print(
                f"\nsweep interrupted — continue with the same command plus --resume: "
                f"{resume_command(sys.argv[1:] if argv is None else argv)}{detail}",
                file=sys.stderr,
            )
            raise SystemExit(signals.exit_code) from None
    sys.stdout.flush()


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this sweep, to be copied: every option as given (the space, --name,
    --storage, --address, --set, ...: they find the sweep and make its space again) plus --resume."""
    args = list(argv) if "--resume" in argv else [*argv, "--resume"]
    return shlex.join(["python", "-m", "tune.search", *args])


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """The space file with the command line's changes (name, trials, base keys, teacher), applied before the
    space is checked: `--num-samples 1` meets the rules `search.num_samples: 1` in the file would."""
    settings: dict[str, object] = {}
    if args.name:
        settings["name"] = check_sweep_name(args.name, "--name", "")
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise UserError("--num-samples must be >= 1")
        settings["search.num_samples"] = args.num_samples
    if args.teacher:
        settings["teacher.checkpoint"] = args.teacher
    return load_space(args.space, parse_overrides(args.overrides), settings)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as stop:
        if stop.code in (130, 143):
            # Interrupted: the sweep's files are complete and Ray is shut down; the interpreter's teardown
            # after Ray takes 3 s more (measured), which a user stopping a sweep should not wait for.
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(stop.code)
        raise
