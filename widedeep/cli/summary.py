"""``python -m widedeep.cli.summary multirun/DATE/TIME``: a table of a sweep's runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from widedeep.cli.errors import OneLineParser, report_user_error
from widedeep.experiment.sweeps import collect, to_markdown

PROG = "python -m widedeep.cli.summary"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="A Markdown table of the runs below a directory (one row per metrics.json: "
        "dataset, model, seed, each command-line override of the runs, e.g. optim.wide.lr in "
        "an lr sweep, then test AUC and log loss, parameters, epochs, wall time).",
    )
    parser.add_argument("runs_dir", type=Path, metavar="RUNS_DIR",
                        help="a sweep's directory (multirun/DATE/TIME), or any folder of runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; return 0, or 2 on a bad argument or a folder without runs."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2)
        return int(stop.code or 0)
    try:
        print(to_markdown(collect(args.runs_dir)))
    except Exception as err:
        return report_user_error(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
