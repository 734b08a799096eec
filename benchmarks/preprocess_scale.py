"""Preprocessing at scale: widedeep's pipeline against a plain-pandas version of the same steps.

    python benchmarks/preprocess_scale.py                                  # 1M rows
    python benchmarks/preprocess_scale.py --rows 10000000 --impl widedeep-stream,pandas

Generates a Criteo-format TSV (never committed: under benchmarks/.work/ by default), then times,
each in a fresh subprocess so that peak RSS is per implementation: read the TSV, split 8:1:1 at
random, fit vocabularies (min_count) and log1p + standardize statistics on train, encode every
split with 3 hashed crosses, write the result (widedeep: its cache entry, through
`widedeep.data.pipeline.prepare`; pandas: one parquet per split plus the vocabularies). The outputs
are then compared: same rows, same ids.

Implementations (``--impl``, comma-separated; the ratio column is relative to the first):
- ``widedeep``: the project's registered Criteo reader (``READERS["criteo"]``), then the pipeline;
- ``widedeep-csv``: `read_criteo_tsv` below (polars' CSV reader, eager), then the pipeline;
- ``widedeep-stream``: the same reader, lazy: the pipeline splits, fits and encodes batch by
  batch (bounded memory);
- ``pandas``: `run_pandas`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

INTEGER = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *INTEGER, *CATEGORICAL]
MIN_COUNT = 10
CROSSES = [["C1", "C2"], ["C3", "C4"], ["C5", "C6", "C7"]]
NUM_BUCKETS = 2**20
RATIOS = {"train": 0.8, "valid": 0.1, "test": 0.1}
SEED = 0
HERE = Path(__file__).resolve().parent

# The generator: cardinalities of the Kaggle Criteo columns (on 45M rows), missing shares close
# to theirs, Zipf(1.15)-distributed ranks hashed to 8 hex characters.
CARD = [1460, 583, 10_131_227, 2_202_608, 305, 24, 12_517, 633, 3, 93_145, 5_683, 8_351_593,
        3_194, 27, 14_992, 5_461_306, 10, 5_652, 2_173, 4, 7_046_547, 18, 15, 286_181, 105,
        142_572]  # fmt: skip
C_MISSING = [0, 0, .03, .03, 0, .12, 0, 0, 0, 0, 0, .03, 0, 0, 0, .03, 0, 0, .44, .44, .03, 0,
             0, .44, 0, .44]  # fmt: skip
I_MISSING = [0.45, 0, 0.21, 0.22, 0.03, 0.22, 0.04, 0, 0.04, 0.45, 0.04, 0.77, 0.22]
I_LOG_MEAN = [0.7, 2.0, 2.3, 1.8, 8.5, 4.0, 2.0, 2.5, 4.0, 0.3, 1.0, 0.5, 1.8]
ZIPF = 1.15


def _chunk(n: int, rng: np.random.Generator):
    import polars as pl

    from widedeep.data.hashing import splitmix64

    hex_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    shifts = np.arange(28, -1, -4, dtype=np.uint64)
    cols: dict[str, Any] = {"label": (rng.random(n) < 0.26).astype(np.int8)}
    for j, name in enumerate(INTEGER):
        x = np.floor(rng.lognormal(I_LOG_MEAN[j], 1.2, n)).astype(np.int64)
        x -= 3 if name == "I2" else 0  # I2 has negative counts, as in Criteo
        cols[name] = pl.Series(x).scatter(np.flatnonzero(rng.random(n) < I_MISSING[j]), None)
    for j, name in enumerate(CATEGORICAL):
        # Inverse CDF of a continuous power law on [1, card]: Zipf-like ranks without tables.
        u = rng.random(n)
        a = 1.0 - ZIPF
        rank = np.floor(((CARD[j] ** a - 1.0) * u + 1.0) ** (1.0 / a)).astype(np.uint64)
        code = splitmix64(rank + np.uint64(j << 40)) & np.uint64(0xFFFFFFFF)
        text = np.ascontiguousarray(hex_digits[(code[:, None] >> shifts) & np.uint64(15)])
        series = pl.Series(text.view("S8").ravel()).cast(pl.String)
        cols[name] = series.scatter(np.flatnonzero(rng.random(n) < C_MISSING[j]), None)
    return pl.DataFrame(cols)


def generate(path: Path, rows: int, seed: int = SEED, chunk: int = 500_000) -> None:
    """A Criteo-format TSV (no header, empty = missing), written in chunks, atomically."""
    from widedeep.core.io import atomic_write

    def write(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        with open(tmp, "wb") as f:
            for start in range(0, rows, chunk):
                frame = _chunk(min(chunk, rows - start), rng)
                frame.write_csv(f, separator="\t", include_header=False, null_value="")

    atomic_write(path, write)


def read_criteo_tsv(cfg: dict[str, Any], root: Path):
    """A minimal Criteo TSV reader (polars' CSV scanner): lazy with ``stream``, else eager."""
    import polars as pl

    dtypes = {
        "label": pl.Int8,
        **dict.fromkeys(INTEGER, pl.Int64),
        **dict.fromkeys(CATEGORICAL, pl.String),
    }
    frame = pl.scan_csv(
        root / cfg["files"]["train"],
        separator="\t",
        has_header=False,
        new_columns=COLUMNS,
        schema_overrides=dtypes,
    )
    return frame if cfg.get("stream") else frame.collect()


# -- the implementations (each runs in its own process) ----------------------------------------

IMPLS = ("widedeep", "widedeep-csv", "widedeep-stream", "pandas")


def run_widedeep(tsv: Path, out: Path, impl: str) -> dict[str, Any]:
    from widedeep.data import pipeline
    from widedeep.data.readers import READERS

    READERS["criteo_tsv"] = read_criteo_tsv
    cfg = {
        "name": "criteo" if impl == "widedeep" else "criteo_tsv",
        "root": str(tsv.parent),
        "files": {"train": tsv.name},
        "stream": impl == "widedeep-stream",
        "cache": True,
        "cache_dir": str(out),
        "split": {"method": "random", "ratios": RATIOS, "seed": SEED},
        "features": {
            "categorical": CATEGORICAL,
            "dense": INTEGER,
            "min_count": MIN_COUNT,
            "dense_transform": "log1p_standardize",
            "crosses": [{"fields": c, "hashed": True, "num_buckets": NUM_BUCKETS} for c in CROSSES],
        },
    }
    started = time.perf_counter()
    directory, manifest, _ = pipeline.prepare(cfg)
    return {
        "seconds": time.perf_counter() - started,
        "output": str(directory),
        "stages_s": manifest["timings_s"],
    }


def run_pandas(tsv: Path, out: Path) -> dict[str, Any]:
    """The same steps, written as a pandas user would: read_csv, value_counts, map, to_parquet."""
    import pandas as pd

    from widedeep.data.hashing import bucketize

    started = time.perf_counter()
    df = pd.read_csv(
        tsv,
        sep="\t",
        header=None,
        names=COLUMNS,
        dtype={
            "label": "int8",
            **dict.fromkeys(INTEGER, "float64"),
            **dict.fromkeys(CATEGORICAL, "str"),
        },
    )
    # The same rows as widedeep's random split: one seeded permutation cut 8:1:1.
    order = np.random.default_rng(SEED).permutation(len(df))
    bounds = np.round(np.cumsum(list(RATIOS.values())) * len(df)).astype(int)
    split = np.empty(len(df), dtype=np.int8)
    for k, part in enumerate(np.split(order, bounds[:-1])):
        split[part] = k
    train = split == 0
    out.mkdir(parents=True, exist_ok=True)
    encoded = pd.DataFrame({"label": df["label"].astype("float32")})
    for c in CATEGORICAL:
        counts = df.loc[train, c].value_counts()
        counts = counts[counts >= MIN_COUNT].rename_axis("value").reset_index()
        vocab = counts.sort_values(["count", "value"], ascending=[False, True], kind="stable")
        vocab.to_parquet(out / f"vocab.{c}.parquet", index=False)
        ids = dict(zip(vocab["value"], range(2, len(vocab) + 2), strict=True))
        encoded[c] = df[c].map(ids).fillna(1).where(df[c].notna(), 0).astype("int64")
    for c in INTEGER:
        x = np.log1p(df[c].clip(lower=0))
        mean, std = x[train].mean(), x[train].std()
        encoded[c] = ((x - mean) / (std or 1.0)).fillna(0.0).astype("float32")
    for fields in CROSSES:
        ids = [encoded[f].to_numpy() for f in fields]
        missing = np.logical_or.reduce([i == 0 for i in ids])
        encoded["_x_".join(fields)] = np.where(missing, 0, bucketize(ids, NUM_BUCKETS) + 2)
    for k, name in enumerate(RATIOS):
        encoded[split == k].to_parquet(out / f"{name}.parquet", index=False)
    return {"seconds": time.perf_counter() - started, "output": str(out)}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: on Linux the latter also
    counts the parent's RSS at fork, so it would charge the driver to every child."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    import polars  # noqa: F401  (imports before the timed section, as in any real run)

    import widedeep  # noqa: F401

    if args.child == "pandas":
        import pandas  # noqa: F401
    imports = peak_rss_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    if args.child == "pandas":
        result = run_pandas(args.input, args.output)
    else:
        result = run_widedeep(args.input, args.output, args.child)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        json.dumps({**result, "cpu_s": cpu, "peak_rss_mb": peak_rss_mb(), "import_rss_mb": imports})
    )


# -- the driver --------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    return f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def compare(widedeep_dir: Path, pandas_dir: Path) -> str:
    """Both must produce the same rows and ids (dense values up to float rounding)."""
    import polars as pl

    for split in RATIOS:
        a = pl.read_parquet(sorted((widedeep_dir / split).glob("*.parquet")))
        b = pl.read_parquet(pandas_dir / f"{split}.parquet").select(a.columns)
        ints = [c for c in a.columns if a[c].dtype == pl.Int64]
        if a.height != b.height or not a.select(ints).equals(b.select(ints)):
            return f"DIFFERENT ({split}: ids or rows differ)"
        worst = max(float((a[c] - b[c]).abs().max() or 0) for c in INTEGER)
        if worst > 1e-4:
            return f"DIFFERENT ({split}: dense differs by {worst:.2g})"
    return "same rows and ids, dense values within 1e-4"


def table(rows: int, results: dict[str, dict[str, Any]]) -> str:
    ref = next(iter(results.values()))["seconds"]
    header = [
        "implementation",
        "rows",
        "seconds",
        "rows/s",
        "peak RSS MB",
        "ratio",
        "CPU s",
        "RSS after imports MB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {rows:,} | {r['seconds']:.2f} | {rows / r['seconds']:,.0f} | "
            f"{r['peak_rss_mb']:,.0f} | {r['seconds'] / ref:.2f} | {r['cpu_s']:.2f} | "
            f"{r['import_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument(
        "--impl",
        default="widedeep,widedeep-csv,pandas",
        help=f"comma-separated, from {', '.join(IMPLS)}",
    )
    p.add_argument("--work", type=Path, default=HERE / ".work", help="generated data and outputs")
    p.add_argument("--results", type=Path, help="append the table to this markdown file")
    p.add_argument("--keep", action="store_true", help="keep the outputs (the TSV is always kept)")
    p.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    impls = args.impl.split(",")
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown:
        p.error(f"unknown --impl {unknown}; choose from {IMPLS}")

    tsv = args.work / f"criteo_{args.rows}.tsv"
    if not tsv.exists():
        started = time.perf_counter()
        generate(tsv, args.rows)
        print(
            f"generated {tsv} ({tsv.stat().st_size / 2**20:,.0f} MiB) in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
    results = {}
    for impl in impls:
        out = args.work / f"out_{impl}_{args.rows}"
        shutil.rmtree(out, ignore_errors=True)  # a fresh build, never a cache hit
        cmd = [sys.executable, __file__, "--child", impl, "--input", str(tsv), "--output", str(out)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[impl] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{impl}: {results[impl]}", file=sys.stderr)
    text = f"{machine()}\n\n{table(args.rows, results)}\n"
    if "pandas" in results:
        for impl in (i for i in results if i != "pandas"):
            check = compare(Path(results[impl]["output"]), Path(results["pandas"]["output"]))
            text += f"\n{impl} vs pandas outputs: {check}"
        text += "\n"
    print(text)
    if args.results:
        with open(args.results, "a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows\n\n{text}")
    if not args.keep:
        for impl in results:
            shutil.rmtree(args.work / f"out_{impl}_{args.rows}", ignore_errors=True)


if __name__ == "__main__":
    main()
