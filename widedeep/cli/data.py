"""widedeep-data: fetch, build and inspect datasets without training.

    widedeep-data download adult [--root DIR] [--base-url URL] [--force] [--retries N]
    widedeep-data prepare data=synthetic data.generator.n_rows=5000
    widedeep-data info data=synthetic

``prepare`` and ``info`` compose the same Hydra config as ``widedeep-train`` (any override
works) and run only the data pipeline. Errors end in one ``widedeep-data: error: ...`` line and
exit code 2; set WIDEDEEP_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from widedeep.cli.errors import OneLineParser, StderrHandler, report_user_error
from widedeep.data.download import RETRIES, ManualDownloadRequired, download_dataset
from widedeep.data.sources import SOURCES, get_source

PROG = "widedeep-data"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("prepare", "build a dataset as configured (no training); print a one-line summary"),
        ("info", "per split: rows and click rate; per field: cardinality and OOV rate"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                       help="Hydra overrides, e.g. data=synthetic data.generator.n_rows=5000")
    p = sub.add_parser("download", help="fetch a public dataset into the data root",
                       description="Fetch and verify a public dataset; datasets whose terms "
                       "call for a download by hand print instructions instead.")
    p.add_argument("name", help=f"one of: {', '.join(sorted(SOURCES))}")
    p.add_argument("--root", type=Path, help="data root (default: $WIDEDEEP_DATA_DIR or ./data)")
    p.add_argument("--base-url", help="mirror serving the files by name (http://... or file://...)")
    p.add_argument("--force", action="store_true", help="download even if present and verified")
    p.add_argument("--retries", type=int, default=RETRIES, metavar="N",
                   help=f"more attempts after a network error or a checksum mismatch "
                   f"(default {RETRIES})")
    return parser


def _load(overrides: Sequence[str]) -> tuple[Any, float]:
    """Compose the train config with ``overrides`` and build its data; (data, seconds)."""
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config
    from widedeep.data.checks import check_data_names
    from widedeep.data.pipeline import load_data

    cfg = compose_config(list(overrides))
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    check_data_names(data_cfg)  # before minutes of reading
    started = time.perf_counter()
    try:
        data = load_data(data_cfg)
    except FileNotFoundError as err:
        name = data_cfg.get("name")
        hint = f" (to fetch it: {PROG} download {name})" if name in SOURCES else ""
        raise FileNotFoundError(f"{err}{hint}") from err
    return data, time.perf_counter() - started


def _prepare(overrides: Sequence[str]) -> None:
    data, seconds = _load(overrides)
    rows = data.info.get("rows") or {s: len(d) for s, d in data.splits.items()}
    per_split = ", ".join(f"{s} {n}" for s, n in rows.items())
    print(f"{data.info.get('name')}: {per_split} rows ({sum(rows.values())} in all); "
          f"{len(data.schema.all_categorical)} id fields, {data.schema.num_dense} dense; "
          f"prepared in {seconds:.2f} s")


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Aligned columns: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in cells))
    return "\n".join(line.rstrip() for line in lines)


def _info(overrides: Sequence[str]) -> None:
    import polars as pl

    from widedeep.core.schema import OOV_ID
    from widedeep.data.checks import constant_fields
    from widedeep.data.preprocess import oov_rate

    data, seconds = _load(overrides)
    schema, splits = data.schema, data.splits
    total = sum(len(d) for d in splits.values())
    print(f"dataset {data.info.get('name')}: {total} rows, built in {seconds:.2f} s\n")
    print(_table(["split", "rows", "click rate"],
                 [[s, str(len(d)), f"{float(d.label.mean()) if len(d) else 0.0:.4f}"]
                  for s, d in splits.items()]))
    oov: dict[str, dict[str, float]] = {}
    for split, d in splits.items():
        columns = {f.name: d.categorical[:, j].numpy() for j, f in enumerate(schema.categorical)}
        columns |= {f.name: d.crosses[:, j].numpy() for j, f in enumerate(schema.crosses)}
        oov[split] = oov_rate(pl.DataFrame(columns), list(columns)) if columns else {}
        for (values, _), f in zip(d.bags, schema.bags, strict=True):  # share of bag values
            oov[split][f.name] = float((values == OOV_ID).float().mean()) if len(values) else 0.0
    kinds = [("categorical", schema.categorical), ("cross", schema.crosses), ("bag", schema.bags)]
    rows = [
        [f.name, kind, str(f.cardinality), *(f"{100 * oov[s][f.name]:.2f}" for s in splits)]
        for kind, fields in kinds
        for f in fields
    ]
    print()
    print(_table(["field", "kind", "cardinality", *(f"OOV % {s}" for s in splits)], rows, left=2))
    print("\ncardinality counts the reserved ids 0 (missing) and 1 (unseen, OOV); "
          "OOV % = share of ids equal to 1")
    if schema.dense:
        print(f"dense fields: {', '.join(schema.dense)}")
    constant = constant_fields(data)
    if constant:
        print(f"constant (one value on every training row; no information): {', '.join(constant)}")


def _download(
    name: str, root: Path | None, base_url: str | None, force: bool, retries: int
) -> None:
    from widedeep.data.pipeline import data_root

    source = get_source(name)
    root = root or data_root()
    if source.automated:
        print(f"{name}: {source.title}\nterms: {source.terms}", file=sys.stderr)
    paths = download_dataset(name, root, base_url=base_url, force=force, retries=retries)
    for path in paths:
        print(path)
    print(f"note: {source.provides}", file=sys.stderr)


@contextmanager
def _download_log() -> Iterator[None]:
    """Show the download progress messages on stderr while the command runs."""
    logger, handler = logging.getLogger("widedeep.download"), StderrHandler()
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``widedeep-data``; returns the exit code (0, or 2 on an error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "download":
            with _download_log():
                _download(args.name, args.root, args.base_url, args.force, args.retries)
        elif args.command == "prepare":
            _prepare(args.overrides)
        else:
            _info(args.overrides)
    except Exception as err:
        if isinstance(err, ManualDownloadRequired) and not os.environ.get("WIDEDEEP_DEBUG"):
            print(err.instructions, file=sys.stderr)
            err = ValueError(f"{err.name} must be downloaded by hand (instructions above)")
        return report_user_error(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
