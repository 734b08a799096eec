"""What verifying the processed-data cache costs: hashing an entry's files, and hashing the
inputs whole (``data.cache_verify=content``), against the load they guard.

    python benchmarks/cache_verify.py                 # 1M Criteo-format rows + 1M synthetic
    python benchmarks/cache_verify.py --rows 200000 --repeats 3

Generates a Criteo-format TSV with `preprocess_scale.generate` (under benchmarks/.work/, never
committed), builds its cache entry, then times (median of ``--repeats``, warm page cache):
- ``load``: `widedeep.data.pipeline.load_data` end to end on a hit (fingerprint, check, read);
- ``check size`` / ``check hash``: `widedeep.data.cache.check` with sizes only / with every
  file's hash (what every load runs);
- ``inputs size`` / ``inputs whole``: `widedeep.data.cache.fingerprint` with
  ``data.cache_verify=size`` / ``content`` (the input TSV hashed whole).
The same for the synthetic click log (``data=synthetic``, no input files) of the same size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from preprocess_scale import CATEGORICAL, CROSSES, INTEGER, generate, machine  # noqa: E402


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def criteo_cfg(tsv: Path, out: Path) -> dict[str, Any]:
    return {
        "name": "criteo",
        "root": str(tsv.parent),
        "files": {"train": tsv.name},
        "cache": True,
        "cache_dir": str(out),
        "split": {"method": "random", "ratios": {"train": 0.8, "valid": 0.1, "test": 0.1}},
        "features": {
            "categorical": CATEGORICAL,
            "dense": INTEGER,
            "min_count": 10,
            "dense_transform": "log1p_standardize",
            "crosses": [{"fields": c, "hashed": True, "num_buckets": 2**20} for c in CROSSES],
        },
    }


def synthetic_cfg(rows: int, out: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config

    overrides = ["data=synthetic", f"data.generator.n_rows={rows}", "data.cache=true",
                 f"data.cache_dir={out}"]
    return OmegaConf.to_container(compose_config(overrides).data, resolve=True)  # type: ignore


def measure(cfg: dict[str, Any], repeats: int) -> dict[str, float]:
    from widedeep.data import cache, pipeline
    from widedeep.data.readers import READERS

    directory, _, _ = pipeline.prepare(cfg)  # build (or reuse) the entry
    root, reader = pipeline.data_root(cfg), READERS[cfg["name"]]
    digest, _ = cache.fingerprint(cfg, root, reader)
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {
        "entry_mib": size / 2**20,
        "load": median_s(lambda: pipeline.load_data(cfg), repeats),
        "check size": median_s(lambda: cache.check(directory, digest, content=False), repeats),
        "check hash": median_s(lambda: cache.check(directory, digest, content=True), repeats),
        "inputs size": median_s(lambda: cache.fingerprint(cfg, root, reader), repeats),
        "inputs whole": median_s(
            lambda: cache.fingerprint({**cfg, "cache_verify": "content"}, root, reader), repeats
        ),
    }


def report(name: str, rows: int, inputs_mib: float, m: dict[str, float]) -> str:
    load = m["load"]
    hashing = m["check hash"] - m["check size"]
    whole = m["inputs whole"] - m["inputs size"]
    return (
        f"{name}, {rows} rows: entry {m['entry_mib']:.1f} MiB, inputs {inputs_mib:.1f} MiB; "
        f"load {load:.3f} s; hashing the entry {hashing:.3f} s ({100 * hashing / load:.1f}% of "
        f"the load); data.cache_verify=content adds {whole:.3f} s "
        f"({100 * whole / load:.1f}% of the load)"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--work", type=Path, default=HERE / ".work", help="generated data and caches")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    tsv = args.work / f"criteo_{args.rows}.tsv"
    if not tsv.exists():
        generate(tsv, args.rows)
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    out = args.work / "cache_verify"
    criteo = measure(criteo_cfg(tsv, out), args.repeats)
    print(report("criteo-format", args.rows, tsv.stat().st_size / 2**20, criteo))
    synthetic = measure(synthetic_cfg(args.rows, out), args.repeats)
    print(report("synthetic", args.rows, 0.0, synthetic))


if __name__ == "__main__":
    main()
