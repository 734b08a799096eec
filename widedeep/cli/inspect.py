"""widedeep-inspect: what the wide part memorised, per cross and per raw field.

    widedeep-inspect RUN                       # the 10 largest positive and negative weights
    widedeep-inspect JOINT_RUN WIDE_RUN --png weights.png --top 5
    widedeep-inspect RUN --json --only user_x_item

RUN is a run directory of widedeep-train (or its checkpoint): its checkpoints/best.ckpt,
config.yaml and preprocessor/ (the vocabularies that decode ids back to raw values, with their
training counts). See `widedeep.experiment.wide_weights.inspect_wide`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from omegaconf import OmegaConf

from widedeep.cli.errors import OneLineParser, report_user_error
from widedeep.experiment.wide_weights import inspect_wide, plot_weights, run_paths
from widedeep.serving.predictor import load_preprocessor
from widedeep.training.run_files import read_run_yaml

PROG = "widedeep-inspect"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or checkpoints)")
    parser.add_argument("--top", type=int, default=10, help="weights per sign and space (10)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these fields or crosses")
    parser.add_argument("--pairs", action="store_true",
                        help="count hashed-cross buckets and their most frequent raw combinations "
                             "in the run's training split (loads the run's data)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--png", metavar="FILE", help="write the weight distributions per cross")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        reports = []
        for run in args.runs:
            checkpoint, run_dir = run_paths(run)
            config = read_run_yaml(run_dir / "config.yaml")
            data_cfg = OmegaConf.to_container(config.data, resolve=True)
            # The serving layer's loader: a run from before training saved its preprocessing
            # still finds it in the processed-data cache.
            pre = load_preprocessor(run_dir, data_cfg)
            report = inspect_wide(checkpoint, args.top, args.pairs, pre)
            if args.only:
                report.spaces = [report.space(name) for name in args.only]
            reports.append(report)
        if args.png:
            plot_weights(reports, args.png)
    except Exception as err:
        sys.exit(report_user_error(PROG, err))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(r.format() for r in reports))
    if args.png:
        print(f"{PROG}: wrote {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
