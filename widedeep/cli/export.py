"""``python -m widedeep.cli.export CHECKPOINT OUT.pt2``: export a trained model."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from widedeep.cli.errors import OneLineParser, report_user_error
from widedeep.serving.export import export_model


def main(argv: Sequence[str] | None = None) -> None:
    parser = OneLineParser(prog="widedeep-export", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a run's checkpoint, or the run directory")
    parser.add_argument("output", help="the .pt2 file to write")
    args = parser.parse_args(argv)
    try:
        print(export_model(args.checkpoint, args.output))
    except Exception as err:
        sys.exit(report_user_error("widedeep-export", err))


if __name__ == "__main__":
    main()
