"""``python -m widedeep.cli.summary multirun/DATE/TIME``: a table of a sweep's runs."""

from __future__ import annotations

import sys
from pathlib import Path

from widedeep.experiment.sweeps import collect, to_markdown


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m widedeep.cli.summary RUNS_DIR", file=sys.stderr)
        return 2
    try:
        print(to_markdown(collect(Path(args[0]))))
    except FileNotFoundError as err:
        print(f"widedeep.cli.summary: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
