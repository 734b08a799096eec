"""Training and inference throughput: widedeep vs. a hand-written loop and peer libraries.

    python benchmarks/throughput.py                    # widedeep + hand-written rows, 1M rows
    python benchmarks/throughput.py --peers            # + the peers, TorchRec and FuxiCTR
    python benchmarks/throughput.py --rows 50000 --rows-only widedeep-adam,handwritten-adam

Every system trains the same model on the same generated Criteo-shaped data (13 dense fields,
26 categorical fields with Zipf-distributed ids): 16-dim embeddings + dense -> MLP 400-400-400
-> 1 logit, plus a linear "wide" part over the one-hot ids; batch 4096, one epoch.

The parent process generates the data once (seeded numpy) into .npy files, then runs each row
in its own subprocess with `torch.set_num_threads(--threads)`, so that peak RSS and the time to
the first step belong to one system. With --interleave the rows' processes take turns (one
running at a time, the others stopped) and each is timed only while it ran, so that this
machine's drift falls on every row alike (THROUGHPUT.md, "Noise"). The peers run in their own
venv (benchmarks/.work/peers-venv, made on first use from benchmarks/requirements-peers.txt),
never in widedeep's; TorchRec in its own ($TORCHREC_VENV, made by benchmarks/torchrec/setup.sh),
and FuxiCTR in its own ($FUXICTR_VENV, made by benchmarks/fuxictr/setup.sh).

Results: a markdown table on stdout and in <out>/throughput-<cpu>.md, raw numbers in
<out>/throughput-<cpu>.json (one pair per CPU model; the CPU's flags in both), with each
row's torch.profiler summary. This script and its modules (throughput_parts/) import only the
standard library and numpy at the top: the same code is the worker in both venvs, and each row
imports its own framework.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # throughput_parts, _peers

from throughput_parts.data import generate, save_data
from throughput_parts.machine import cpu_report, cpu_slug, matmul_gflops
from throughput_parts.report import add_ratios, atomic_write, render, targets_over_rounds
from throughput_parts.rounds import run_rows
from throughput_parts.spec import HERE, ROW_BY_NAME, ROWS, RowSpec, Settings, mlp_flops_per_sample
from throughput_parts.worker import worker


def select_rows(only: str | None, peers: bool, bf16: bool = True) -> list[RowSpec]:
    """The rows to run; bf16 rows only where the CPU has bf16 instructions (``bf16``)."""
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ROW_BY_NAME]
        if unknown:
            raise SystemExit(f"throughput: unknown rows {unknown}; known: {sorted(ROW_BY_NAME)}")
        specs = [ROW_BY_NAME[n] for n in names]
    else:
        specs = [r for r in ROWS if r.default and (peers or not r.peer)]
    return [r for r in specs if bf16 or not r.bf16]


def bf16_note(machine: dict, asked: list[RowSpec], ran: list[RowSpec]) -> str | None:
    skipped = [r.name for r in asked if r.bf16 and r not in ran]
    if not skipped:
        return None
    if machine.get("gpu"):
        return f"{', '.join(skipped)} not run: this GPU ({machine['gpu']}) has no bf16"
    return (
        f"{', '.join(skipped)} not run: this CPU ({machine['cpu']}) has neither avx512_bf16 nor "
        "AMX, so bf16 would be emulated (slower than fp32)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of generated data")
    p.add_argument(
        "--peers",
        action="store_true",
        help="add pytorch-widedeep, deepctr-torch, torchrec and fuxictr",
    )
    p.add_argument("--rows-only", help="comma-separated table rows to run, e.g. widedeep-adam")
    p.add_argument("--steps", type=int, help="at most this many training steps per row")
    p.add_argument("--warmup", type=int, default=10, help="training steps left out of samples/s")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--eval-batch-size", type=int, default=8192)
    p.add_argument("--infer-rows", type=int, help="rows scored for inference (default: all)")
    p.add_argument(
        "--infer-passes", type=int, default=3, help="inference passes per row; the median"
    )
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="widedeep and hand-written rows without widedeep.keep_freed_memory's malloc settings",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="rounds of every row (see --interleave)")
    p.add_argument(
        "--interleave",
        type=float,
        metavar="SECONDS",
        help="run the rows' processes in turns of SECONDS (the others stopped), not one after "
        "the other; each row then reports the mean over the rounds, not the best",
    )
    p.add_argument(
        "--peer-workers", type=int, help="pytorch-widedeep's DataLoader workers (default: its own)"
    )
    p.add_argument(
        "--profile-steps",
        type=int,
        default=5,
        help="warm-up steps profiled per row (torch.profiler top ops, with the results); 0: none",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda: the widedeep and hand-written rows on one GPU (benchmarks/gpu.sh)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results", help="throughput.md/.json here")
    p.add_argument("--work", type=Path, default=HERE / ".work", help="data, logs, peers' venv")
    # Internal: one row in this process.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        threads=args.threads,
        warmup=args.warmup,
        steps=args.steps,
        infer_rows=args.infer_rows,
        infer_passes=args.infer_passes,
        system_malloc=args.system_malloc,
        peer_workers=args.peer_workers,
        profile_steps=args.profile_steps,
        device=args.device,
        seed=args.seed,
    )


def worker_main(args: argparse.Namespace) -> int:
    spec = ROW_BY_NAME[args.worker]
    raw = json.loads(args.settings)
    s = Settings(**{**raw, "hidden": tuple(raw["hidden"])})
    result = worker(spec, args.data, s, args.launched)
    atomic_write(args.result, json.dumps(result, indent=2))
    return 0


def run_note(repeat: int, interleave: float | None) -> str:
    if interleave:
        how = f"rows interleaved in turns of {interleave:g} s"
        return how + (f", mean of {repeat} rounds" if repeat > 1 else ", one round")
    return f"best of {repeat} round-robin runs per row" if repeat > 1 else "one run"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.interleave is not None and args.interleave <= 0:
        raise SystemExit(f"throughput: --interleave must be > 0 seconds, got {args.interleave}")
    if args.infer_passes < 1:
        raise SystemExit(f"throughput: --infer-passes must be >= 1, got {args.infer_passes}")
    if args.repeat < 1:
        raise SystemExit(f"throughput: --repeat must be >= 1, got {args.repeat}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise SystemExit(f"throughput: --device must be cpu or cuda[:N], got {args.device!r}")
    machine = cpu_report(args.device)
    asked = select_rows(args.rows_only, args.peers)
    specs = select_rows(args.rows_only, args.peers, bf16=machine["bf16"])
    if args.device != "cpu":  # the peers' rows run on the CPU only
        specs = [r for r in specs if r.system in ("widedeep", "hand-written")]
    s = settings_from(args)
    load_start = os.getloadavg()[0]
    gflops = matmul_gflops(s.threads, device=s.device)
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work, prefix="data-") as tmp:
        save_data(generate(args.rows, s.seed), Path(tmp))
        results, rounds = run_rows(specs, s, Path(tmp), args.work, args.repeat, args.interleave)
    # The better of before and after the rows.
    gflops = max(gflops, matmul_gflops(s.threads, device=s.device))
    for round_ in [results, *rounds]:
        add_ratios(round_, gflops)
    report = {
        "command": shlex.join(["python", "benchmarks/throughput.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": args.rows,
        "run_note": run_note(args.repeat, args.interleave),
        "train_rows_note": f"at most {s.steps} steps per row" if s.steps else "one epoch",
        "settings": asdict(s),
        "machine": {
            **machine,
            "platform": platform.platform(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
        },
        "gflops": gflops,
        "ceiling_train": gflops * 1e9 / mlp_flops_per_sample(True),
        "ceiling_inference": gflops * 1e9 / mlp_flops_per_sample(False),
        "results": results,
        "rounds": rounds,
        "bf16_note": bf16_note(machine, asked, specs),
    }
    report["targets"] = targets_over_rounds(results, rounds)
    text = render(report)
    print(text)
    # One file per machine: results of different CPUs sit side by side.
    name = f"throughput-{cpu_slug(machine['gpu'] or machine['cpu'])}"
    atomic_write(args.out / f"{name}.md", text)
    atomic_write(args.out / f"{name}.json", json.dumps(report, indent=2))
    if args.out.resolve() != (HERE / "results").resolve():
        # Elsewhere also under the plain names, for scripts; in benchmarks/results those are
        # the Xeon's committed run (THROUGHPUT.md), kept as it is.
        atomic_write(args.out / "throughput.md", text)
        atomic_write(args.out / "throughput.json", json.dumps(report, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
