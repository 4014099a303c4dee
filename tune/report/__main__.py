"""`python -m tune.report --sweep DIR [--wandb]`: rebuild a finished sweep's report.html and, with --wandb,
save its W&B Report (online only; offline or disabled runs get one line saying what to do)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.errors import cli_errors
from tune.records import find_sweep
from tune.report.html import write_report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tune.report", description="Rebuild a finished sweep's report.html (one self-contained page)."
    )
    parser.add_argument("--sweep", help="sweep folder or name (default: the newest finished one in results/)")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also create or update the sweep's W&B Report (needs its runs online: `wandb login`)",
    )
    args = parser.parse_args(argv)
    with cli_errors():
        folder = find_sweep(args.sweep)
        print(f"wrote {write_report(folder)}")
        if args.wandb:
            # Imported here: wandb-workspaces and wandb cost ~1 s to import, and only --wandb needs them.
            from tune.report.wandb_report import report_command_line

            print(report_command_line(folder))


if __name__ == "__main__":
    main()
