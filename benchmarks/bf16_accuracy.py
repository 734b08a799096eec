"""bf16-mixed against fp32: test AUC per dataset and seed, and the training time of each.

    python benchmarks/bf16_accuracy.py                               # synthetic + frappe, 3 seeds
    python benchmarks/bf16_accuracy.py --datasets synthetic --seeds 0 \
        --override data.generator.n_rows=2000 trainer.max_epochs=1   # a smoke run

Every (dataset, seed) trains twice with widedeep-train's config, ``trainer.precision=32-true``
and ``bf16-mixed``, everything else equal; the claim (issue 18, part 2) is |AUC(bf16) - AUC(fp32)|
<= 0.001 in every pair. Results: <out>/bf16-<cpu>.md and .json, with the CPU and its flags
(bf16 without avx512_bf16 / AMX is emulated: the accuracy holds, the speed does not).
Needs WIDEDEEP_DATA_DIR for frappe. A measurement: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from widedeep.cli.config import compose_config
from widedeep.core.cpu import REPORTED_FLAGS, cpu_flags, cpu_has_bf16, cpu_name
from widedeep.training.run import train

HERE = Path(__file__).resolve().parent
PRECISIONS = ("32-true", "bf16-mixed")
TOLERANCE = 0.001
# The model of each dataset: the joint Wide & Deep with the paper's optimizers.
BASE = ("model=wide_deep", "trainer.progress_bar=false", "trainer.logger=none")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cpu"


def run_pair(dataset: str, seed: int, overrides: Sequence[str], work: Path) -> dict:
    out = {"dataset": dataset, "seed": seed}
    for precision in PRECISIONS:
        cfg = compose_config(
            [
                f"data={dataset}",
                *BASE,
                f"seed={seed}",
                f"trainer.precision={precision}",
                *overrides,
            ],
            output_dir=str(work / f"{dataset}-{seed}-{precision}"),
        )
        metrics = train(cfg)
        out[precision] = {
            "test_auc": metrics["test"]["auc"],
            "fit_time_s": metrics["fit_time_s"],
            "epochs": metrics["epochs"],
        }
    out["auc_diff"] = out["bf16-mixed"]["test_auc"] - out["32-true"]["test_auc"]
    out["speedup"] = out["32-true"]["fit_time_s"] / out["bf16-mixed"]["fit_time_s"]
    out["met"] = abs(out["auc_diff"]) <= TOLERANCE
    return out


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# bf16-mixed vs fp32",
        "",
        f"`{report['command']}`",
        "",
        f"{m['cpu']}; flags: {', '.join(m['flags']) or 'none of ' + ', '.join(REPORTED_FLAGS)}"
        f"; bf16 in hardware: {'yes' if m['bf16'] else 'NO (emulated: slower than fp32)'}; "
        f"{report['date']}.",
        "",
        "| dataset | seed | test AUC fp32 | test AUC bf16 | diff | fit s fp32 | fit s bf16 "
        "| speed-up | within 0.001 |",
        "|---" * 9 + "|",
    ]
    for p in report["pairs"]:
        a, b = p["32-true"], p["bf16-mixed"]
        lines.append(
            f"| {p['dataset']} | {p['seed']} | {a['test_auc']:.4f} | {b['test_auc']:.4f} | "
            f"{p['auc_diff']:+.4f} | {a['fit_time_s']:.1f} | {b['fit_time_s']:.1f} | "
            f"{p['speedup']:.2f}x | {'yes' if p['met'] else 'NO'} |"
        )
    lines.append("")
    for dataset, s in report["summary"].items():
        lines.append(
            f"- {dataset}: mean diff {s['mean_diff']:+.4f}, max |diff| {s['max_abs_diff']:.4f}, "
            f"median speed-up {s['median_speedup']:.2f}x, {s['met']}/{s['pairs']} pairs within "
            f"{TOLERANCE}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="synthetic,frappe")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--override", nargs="*", default=[], help="more widedeep-train overrides")
    p.add_argument("--out", type=Path, default=HERE / "results" / "bf16")
    p.add_argument("--work", type=Path, default=HERE / ".work" / "bf16")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    pairs = [run_pair(d, s, args.override, args.work) for d in datasets for s in seeds]
    summary = {}
    for d in datasets:
        mine = [q for q in pairs if q["dataset"] == d]
        summary[d] = {
            "pairs": len(mine),
            "met": sum(q["met"] for q in mine),
            "mean_diff": statistics.fmean(q["auc_diff"] for q in mine),
            "max_abs_diff": max(abs(q["auc_diff"]) for q in mine),
            "median_speedup": statistics.median(q["speedup"] for q in mine),
        }
    flags = cpu_flags()
    report = {
        "command": " ".join(["python", "benchmarks/bf16_accuracy.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": cpu_name(),
            "flags": [f for f in REPORTED_FLAGS if f in flags],
            "bf16": cpu_has_bf16(),
        },
        "pairs": pairs,
        "summary": summary,
    }
    text = render(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bf16-{slug(cpu_name())}"
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    return 0 if all(q["met"] for q in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
