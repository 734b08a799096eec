"""widedeep-predict: score raw rows, in the dataset's own file format, with a trained run.

    widedeep-predict checkpoint=RUN/checkpoints/best.ckpt input=adult.test output=scores.csv

Keys (key=value, like widedeep-train):
  checkpoint   a run's checkpoint, or the run directory (its checkpoints/best.ckpt)
  input        a raw file as the dataset ships it (Criteo TSV, adult.test, a libFM file, ...)
  output       scores.parquet (default) or a .csv path: the suffix picks the format
  reader       the format of input; default the run's dataset (a data=table run: its own
               columns, label and types, in any format its reader takes; a generated dataset:
               table, i.e. a Parquet or CSV file of raw columns)
  on_bad_rows  error or skip; default the run's data.on_bad_rows
  batch_size   rows per forward pass; default the run's data.eval_batch_size
  compile      true or false: torch.compile the deep tower's MLP (docs/speed.md); default the
               run's trainer.compile. Pays off on large inputs only: compiling takes seconds.

The run directory holds config.yaml (its data section: reader, features, bad-row policy) and
preprocessor/ (vocabularies, dense statistics, crosses: fitted on the training split only), so
no training data is needed. Unseen categories get the OOV id (1), as at training time.

Labels are optional here (training still requires them): the readers are called with
labels="optional", so input may be the format without its label column, e.g. Criteo lines of
39 fields (I1-I13, C1-C26, as Kaggle's test.txt), an Avazu CSV without click, adult rows without
income, MovieLens ratings without rating, libFM lines without the label token, a table without
the label column. The first line (or the header) decides for the whole file: a line the other
way round is a bad row (an error naming file and line, or skipped with on_bad_rows=skip). The
label plays no part in the scores: the same rows score the same with or without it.

Output columns: row_id (position among the rows read), label (only when the input has one; no
label column otherwise), wide_logit, deep_logit, logit and score = sigmoid(logit).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from widedeep.cli.errors import StderrHandler, report_user_error
from widedeep.cli.keys import unknown_key_message
from widedeep.core.allocator import keep_freed_memory
from widedeep.serving.predictor import predict_file

log = logging.getLogger("widedeep")
PROG = "widedeep-predict"
DEFAULTS = {
    "checkpoint": "???",
    "input": "???",
    "output": "scores.parquet",
    "reader": None,
    "on_bad_rows": None,
    "batch_size": None,
    "compile": None,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return
    # A handler on the current stderr: main() run in-process may outlive the stream it began with.
    logging.basicConfig(
        level=logging.INFO, format=f"{PROG}: %(message)s", handlers=[StderrHandler()]
    )
    try:
        keep_freed_memory()
        loose = [a for a in args if "=" not in a]
        if loose:
            raise ValueError(f"expected key=value arguments, got {loose} (--help lists the keys)")
        unknown = sorted({a.split("=", 1)[0] for a in args} - DEFAULTS.keys())
        if unknown:  # a mistyped key is an error, not ignored
            raise ValueError(unknown_key_message("", unknown[0], DEFAULTS))
        cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(args))
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ValueError(f"missing {missing}: widedeep-predict checkpoint=RUN input=FILE")
        source = Path(str(cfg.input)).expanduser()
        if source.is_dir():  # predict_file would call it missing
            raise ValueError(f"input {source}: a directory, not a file (give one file of rows)")
        scores, bad = predict_file(
            cfg.checkpoint,
            cfg.input,
            cfg.output,
            cfg.reader,
            cfg.on_bad_rows,
            cfg.batch_size,
            compile=cfg.compile,
        )
    except Exception as err:
        sys.exit(report_user_error(PROG, err))
    skipped = f"; skipped bad rows {bad}" if bad else ""
    log.info("scored %d rows -> %s%s", scores.height, cfg.output, skipped)


if __name__ == "__main__":
    main()
