"""Peak memory of training on a dataset larger than memory: the streaming loader vs its size.

    python benchmarks/streaming_rss.py --rows 10000000             # ~4 min on 2 CPU cores
    python benchmarks/streaming_rss.py --rows 10000000 --memory    # + the in-memory loader
    python benchmarks/streaming_rss.py --rows 300000 --cap-gb 2.5  # streaming under RLIMIT_AS
    python benchmarks/streaming_rss.py --rows 40000000 --memory --cgroup-mb 1024   # as root

Steps, each in its own subprocess so that each peak RSS (``ru_maxrss``) belongs to one step:

1. prepare: generate the synthetic click log (``data=synthetic``) with ``--rows`` rows and
   write its processed cache (parquet); this step holds the whole data in memory once, which
   is why it is a separate process and is not what the benchmark measures;
2. baseline: one streamed epoch on a 20,000-row log with the same settings: the process's fixed
   cost (Python, torch, Lightning, the model);
3. stream: one epoch of ``widedeep.training.run.train`` with ``trainer.loader=stream`` on the
   big log;
4. memory (``--memory``): the same with the in-memory loader (reading the same cache), for
   comparison.

The splits are 98 / 1 / 1 %: evaluation splits are held in memory by both loaders (only
training streams), so small ones keep the comparison about the training data. The train split's
in-memory size is its tensors' bytes (what `ColumnarData` would hold), without the transient
copies of loading. ``--cap-gb`` runs the stream step under ``RLIMIT_AS`` (address space, which
counts mapped libraries and thread stacks too: some 2 GB before any data). ``--cgroup-mb`` runs
each training step in a memory cgroup of that size instead (a real cap on resident memory, page
cache included, as a container's limit; needs a writable ``/sys/fs/cgroup``, i.e. root): a step
that needs more is killed by the kernel and reported as failed.

Results: a table on stdout, raw numbers in ``<out>/streaming_rss.json``.
Torch runs with ``--threads`` threads (default 1: on a shared 2-core machine two OpenMP threads
per process spin against each other and every other process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE_ROWS = 20_000


def overrides(rows: int, args: argparse.Namespace) -> list[str]:
    """The training config of every step (Hydra overrides of widedeep-train)."""
    return [
        "data=synthetic",
        f"data.generator.n_rows={rows}",
        "++data.cache=true",  # both loaders read the cache (synthetic data skips it by default)
        "data.split.ratios={train: 0.98, valid: 0.01, test: 0.01}",
        f"data.batch_size={args.batch_size}",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.logger=none",
        f"trainer.shuffle_buffer={args.shuffle_buffer}",
        f"trainer.loader_workers={args.workers}",
        "optim.wide.lr=0.01",
        "optim.deep.lr=0.01",
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- the steps (run in a child process) ----------------------------------------------------------


def step_prepare(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config
    from widedeep.data.pipeline import prepare

    cfg = OmegaConf.to_container(compose_config(overrides(rows, args)).data, resolve=True)
    directory, manifest, hit = prepare({**cfg, "cache": True})
    schema = manifest["schema"]
    # Bytes per row of the tensors: dense float32, ids int64, label float32.
    ids = len(schema["categorical"]) + len(schema["crosses"])
    per_row = 4 * len(schema["dense"]) + 8 * ids + 4
    train_files = sorted((directory / "train").glob("*.parquet"))
    return {
        "cache": str(directory),
        "cache_hit": hit,
        "rows": manifest["rows"],
        "train_bytes_in_memory": per_row * manifest["rows"]["train"],
        "train_bytes_parquet": sum(p.stat().st_size for p in train_files),
    }


def step_train(rows: int, loader: str, args: argparse.Namespace) -> dict[str, Any]:
    from widedeep.cli.config import compose_config
    from widedeep.training.run import train

    out = args.out / f"run-{loader}-{rows}"
    cfg = compose_config([*overrides(rows, args), f"trainer.loader={loader}"], str(out))
    metrics = train(cfg)
    return {
        "test_auc": metrics["test"]["auc"],
        "fit_time_s": metrics["fit_time_s"],
        "wall_time_s": metrics["wall_time_s"],
        "train_rows": metrics["rows"]["train"],
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.step == "prepare":
        result = step_prepare(args.rows, args)
    else:
        if args.cap_gb:
            cap = int(args.cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        result = step_train(args.rows, args.step, args)
    result |= {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}
    print("RESULT " + json.dumps(result), flush=True)


# -- the parent --------------------------------------------------------------------------------


class MemoryCgroup:
    """A memory cgroup (v2 or v1) capping what the processes put in it may keep resident."""

    def __init__(self, limit_mb: int) -> None:
        root = Path("/sys/fs/cgroup")
        name = f"widedeep-streaming-rss-{os.getpid()}"
        v2 = (root / "cgroup.controllers").exists()
        self.path = root / name if v2 else root / "memory" / name
        try:
            self.path.mkdir()
        except OSError as error:
            sys.exit(
                f"--cgroup-mb: cannot create the memory cgroup {self.path} ({error}); "
                "it needs a writable /sys/fs/cgroup (root, or a delegated cgroup)"
            )
        limit = str(limit_mb * 2**20)
        self.peak_file = "memory.peak" if v2 else "memory.max_usage_in_bytes"
        (self.path / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(limit)
        if v2:
            (self.path / "memory.swap.max").write_text("0")

    def enter(self) -> None:
        """Move the calling process (a child, between fork and exec) into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self) -> float | None:
        peak = self.path / self.peak_file
        return int(peak.read_text()) / 2**20 if peak.exists() else None

    def remove(self) -> None:
        self.path.rmdir()


def run_step(
    step: str,
    rows: int,
    args: argparse.Namespace,
    cap: float | None = None,
    cgroup_mb: int | None = None,
) -> dict:
    command = [sys.executable, __file__, "--child", step, "--rows", str(rows)]
    command += ["--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    command += ["--shuffle-buffer", str(args.shuffle_buffer), "--workers", str(args.workers)]
    command += ["--out", str(args.out)] + (["--cap-gb", str(cap)] if cap else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    # Fewer glibc malloc arenas: each reserves 64 MB of address space, which RLIMIT_AS counts.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    limits = (f" cap={cap} GB" if cap else "") + (f" cgroup={cgroup_mb} MB" if cgroup_mb else "")
    print(f"[{step}] rows={rows:,}{limits} ...", flush=True)
    cgroup = MemoryCgroup(cgroup_mb) if cgroup_mb else None
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=cgroup.enter if cgroup else None,
        )
        cgroup_peak = cgroup.peak_mb() if cgroup else None
    finally:
        if cgroup:
            cgroup.remove()
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stdout + done.stderr)[-2500:]
        if done.returncode == -9 and cgroup:
            tail += f"\nkilled (SIGKILL): over the {cgroup_mb} MB memory cgroup"
        return {"failed": True, "returncode": done.returncode, "log_tail": tail}
    result = json.loads(lines[-1][len("RESULT ") :])
    if cgroup:
        # Resident memory and page cache charged to the cgroup, at most the limit.
        result |= {"cgroup_mb": cgroup_mb, "cgroup_peak_mb": cgroup_peak}
    print(f"[{step}] {result}", flush=True)
    return result


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    mb = 2**20
    prep = results["prepare"]
    lines = [
        f"rows {args.rows:,} (train {prep['rows']['train']:,}); train split in memory "
        f"{prep['train_bytes_in_memory'] / mb:,.0f} MB, as parquet "
        f"{prep['train_bytes_parquet'] / mb:,.0f} MB",
        "",
        "| run | train rows | peak RSS (MB) | test AUC | fit (s) | step wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("baseline", "stream", "memory"):
        r = results.get(name)
        if r is None:
            continue
        if r.get("failed"):
            tail = r["log_tail"].strip().splitlines() or [f"exit {r['returncode']}"]
            error = next((x for x in reversed(tail) if "rror" in x or "failed" in x), tail[-1])
            lines.append(f"| {name} | | failed: {error.strip()[:70]} | | | |")
            continue
        lines.append(
            f"| {name} | {r['train_rows']:,} | {r['peak_rss_mb']:,.0f} | {r['test_auc']:.4f} "
            f"| {r['fit_time_s']:.0f} | {r['seconds']:.0f} |"
        )
    for name in ("stream", "memory"):
        r = results.get(name) or {}
        if r.get("cgroup_mb"):
            lines.append(
                f"\n{name}: memory cgroup limit {r['cgroup_mb']:,} MB, peak charged "
                f"{r['cgroup_peak_mb']:,.0f} MB (resident memory + page cache)"
            )
    if "stream" in results and not results["stream"].get("failed"):
        extra = results["stream"]["peak_rss_mb"] - results["baseline"]["peak_rss_mb"]
        lines += [
            "",
            f"stream: {extra:,.0f} MB above the 20k-row baseline for "
            f"{prep['train_bytes_in_memory'] / mb:,.0f} MB of training data "
            f"({prep['train_bytes_in_memory'] / mb / max(extra, 1):.1f}x)",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="synthetic rows in all")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--shuffle-buffer", type=int, default=65536)
    parser.add_argument("--workers", type=int, default=0, help="trainer.loader_workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--memory", action="store_true", help="also train with loader=memory")
    parser.add_argument("--cap-gb", type=float, help="RLIMIT_AS for the stream step")
    parser.add_argument("--cgroup-mb", type=int, help="memory cgroup limit of the training steps")
    parser.add_argument("--out", type=Path, default=HERE / ".work" / "streaming_rss")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    if args.child:
        args.step = args.child
        child(args)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    # Caches beside the results, not in ~/.cache: a 10M-row entry is a few hundred MB.
    os.environ.setdefault("WIDEDEEP_CACHE_DIR", str(args.out / "cache"))
    started = time.perf_counter()
    results: dict[str, Any] = {"prepare": run_step("prepare", args.rows, args)}
    if results["prepare"].get("failed"):
        sys.exit(results["prepare"]["log_tail"])
    run_step("prepare", BASELINE_ROWS, args)
    results["baseline"] = run_step("stream", BASELINE_ROWS, args)
    results["stream"] = run_step("stream", args.rows, args, args.cap_gb, args.cgroup_mb)
    if args.memory:
        results["memory"] = run_step("memory", args.rows, args, args.cap_gb, args.cgroup_mb)
    results["settings"] = {
        **{k: str(v) for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "total_s": time.perf_counter() - started,
    }
    (args.out / "streaming_rss.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results, args))
    print(f"total {results['settings']['total_s']:.0f} s; raw numbers: {args.out}")
    for name in ("stream", "memory"):
        if results.get(name, {}).get("failed"):
            print(f"{name} failed:\n{results[name]['log_tail']}", file=sys.stderr)


if __name__ == "__main__":
    main()
