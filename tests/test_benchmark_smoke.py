"""benchmarks/throughput.py on a few thousand rows: its own rows run and its table is whole.

A smoke test, not a benchmark: the numbers are not checked, only that every own-code row
(widedeep through Lightning, the hand-written loop) trains, scores and is reported. The peers
and the compiled rows are left out: they need their own venv or minutes of compilation.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
ROWS = ["handwritten-adam", "handwritten-sparse", "widedeep-adam", "widedeep-sparse"]
COLUMNS = [
    "row",
    "optimizer",
    "train samples/s",
    "vs hand-written",
    "of train ceiling",
    "inference samples/s",
    "of inference ceiling",
    "peak RSS MiB",
    "first step s",
    "outside fwd/bwd/step",
]


def load_throughput() -> ModuleType:
    return load_script(SCRIPT)


def load_part(name: str) -> ModuleType:
    """One of the script's modules (benchmarks/throughput_parts): loading the script puts its
    folder on sys.path, as running it does."""
    load_throughput()
    return importlib.import_module(f"throughput_parts.{name}")


def run_benchmark(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The benchmark's command line. Should a loaded machine make it outlast ``timeout``, it is
    interrupted (SIGINT), so that it kills the rows' processes it started: each has a session
    of its own and may be stopped (SIGSTOP), so killing only the parent would leave them."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(f"the benchmark ran over {timeout} s\n{out}{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def table(markdown: str) -> list[list[str]]:
    """The cells of the first markdown table in ``markdown``."""
    lines = [line for line in markdown.splitlines() if line.startswith("| row |")]
    assert lines, markdown
    start = markdown.splitlines().index(lines[0])
    rows = []
    for line in markdown.splitlines()[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def number(cell: str) -> float:
    return float(cell.split()[0].rstrip("x%").replace(",", ""))


def test_step_clock_times_the_steady_steps_only():
    tp = load_part("measure")
    clock = tp.StepClock(launched=0.0, batch_size=100, rows=950, warmup=2)
    clock.ends = [0.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0]  # 10 steps
    clock.inside = [(0.1, 0.2, 0.3)] * 10
    clock.first_step_at = 5.0
    out = clock.summary()
    # Steps 2..9 after the end of step 1: 7 full batches and the last one of 50 rows in 8 s.
    assert out["steady_samples"] == 750
    assert out["samples_per_s"] == pytest.approx(750 / 8)
    assert out["time_to_first_step_s"] == 5.0
    b = out["breakdown_ms_per_step"]
    assert b["total"] == pytest.approx(1000.0)
    assert b["outside"] == pytest.approx(400.0)
    assert b["outside_share"] == pytest.approx(0.4)


def test_step_clock_counts_only_the_time_the_process_ran():
    tp = load_part("measure")
    clock = tp.StepClock(launched=0.0, batch_size=100, rows=1000, warmup=1)
    clock.ends = [2.0, 3.0, 4.0, 15.0, 16.0]  # a pause of 10 s inside step 3
    clock.inside = [(0.1, 0.2, 0.3)] * 5
    clock.first_step_at = 2.0
    running = [(0.0, 1.5), (1.7, 4.0), (14.0, 20.0)]  # stopped 1.5-1.7 and 4-14
    assert tp.active_seconds(0.0, 2.0, running) == pytest.approx(1.8)
    assert tp.active_seconds(3.0, 15.0, None) == 12.0
    out = clock.summary(running)
    # Steps 1..4: 400 samples in 1 + 1 + (15 - 4 - 10) + 1 = 4 s of running time.
    assert out["steady_seconds"] == pytest.approx(4.0)
    assert out["samples_per_s"] == pytest.approx(100.0)
    assert out["time_to_first_step_s"] == pytest.approx(1.8)
    assert out["paused_steps"] == 1
    # The paused step is left out of the per-step figures, not stretched into them.
    assert out["median_step_ms"] == pytest.approx(1000.0)
    assert out["breakdown_ms_per_step"]["total"] == pytest.approx(1000.0)
    assert out["breakdown_note"] is None


def result_row(train: dict) -> dict:
    """A row's result as the report renders it, around its ``train`` summary."""
    return {
        "row": "widedeep-adam",
        "system": "widedeep",
        "optimizer": "Adam",
        "train": train,
        "inference": {"samples_per_s": 5.0},
        "vs_handwritten": None,
        "train_of_ceiling": 0.1,
        "inference_of_ceiling": 0.1,
        "peak_rss_mib": 1.0,
        "others_cpu_share": 0.0,
    }


def test_a_row_whose_every_steady_step_was_paused_says_so():
    """On a busy machine every steady step can outlast an --interleave turn: the row then has
    no breakdown and no median step, and its JSON and its table say why."""
    measure, report = load_part("measure"), load_part("report")
    clock = measure.StepClock(launched=0.0, batch_size=100, rows=400, warmup=1)
    clock.ends = [1.0, 2.0, 3.0, 4.0]
    clock.inside = [(0.1, 0.2, 0.3)] * 4
    clock.first_step_at = 1.0
    running = [(0.0, 1.2), (1.5, 2.2), (2.5, 3.2), (3.5, 5.0)]  # a pause inside every step
    out = clock.summary(running)
    assert out["paused_steps"] == out["steady_steps"] == 3
    assert out["samples_per_s"] == pytest.approx(300 / 2.1)  # still timed: 0.7 s ran per step
    assert out["median_step_ms"] is None
    assert out["breakdown_ms_per_step"] is None
    assert out["breakdown_note"] == measure.ALL_PAUSED
    interrupted = "n/a (every steady step was interrupted)"
    assert report.table_row(result_row(out)).endswith(f"| {interrupted} |")
    text = report.render(
        {
            "command": "python benchmarks/throughput.py",
            "date": "today",
            "rows": 400,
            "train_rows_note": "one epoch",
            "run_note": "one run",
            "settings": {"batch_size": 100, "eval_batch_size": 100, "threads": 1, "warmup": 1},
            "machine": {"cpu": "cpu", "cores": 2, "load_start": 0.0, "load_end": 0.0},
            "gflops": 1.0,
            "ceiling_train": 1.0,
            "ceiling_inference": 1.0,
            "results": [result_row(out)],
            "targets": [],
        }
    )
    assert f"- widedeep-adam: no breakdown: {measure.ALL_PAUSED}" in text
    # A row that does not time inside its steps (the peers) says that instead, as "–".
    clock.inside = [None] * 4
    out = clock.summary()
    assert out["breakdown_ms_per_step"] is None and out["breakdown_note"] == measure.NOT_TIMED
    assert out["median_step_ms"] == pytest.approx(1000.0)
    assert report.table_row(result_row(out)).endswith("| – |")


def test_interleaved_rounds_combine_the_breakdowns_they_have():
    measure, rounds = load_part("measure"), load_part("rounds")

    def round_(rate: float, step_ms: float | None) -> dict:
        parts = ("total", "forward", "backward", "optimizer", "outside", "outside_share")
        b = None if step_ms is None else dict.fromkeys(parts, step_ms)
        train = {
            "samples_per_s": rate,
            "median_step_ms": step_ms,
            "time_to_first_step_s": 1.0,
            "breakdown_ms_per_step": b,
            "breakdown_note": None if b else measure.ALL_PAUSED,
        }
        return {**result_row(train), "inference": {"samples_per_s": rate / 2}}

    both = rounds.combine([round_(10.0, 100.0), round_(20.0, 300.0)], interleaved=True)["train"]
    assert both["samples_per_s"] == 15.0 and both["median_step_ms"] == 200.0
    assert both["breakdown_ms_per_step"]["total"] == 200.0 and both["breakdown_note"] is None
    for runs in (
        [round_(10.0, 100.0), round_(20.0, None)],
        [round_(20.0, None), round_(10.0, 100.0)],
    ):
        one = rounds.combine(runs, interleaved=True)["train"]
        assert one["samples_per_s"] == 15.0 and one["median_step_ms"] == 100.0
        assert one["breakdown_ms_per_step"]["total"] == 100.0
        assert one["breakdown_note"] == f"mean of 1 of 2 rounds: in the others {measure.ALL_PAUSED}"
    none = rounds.combine([round_(10.0, None), round_(20.0, None)], interleaved=True)["train"]
    assert none["samples_per_s"] == 15.0 and none["median_step_ms"] is None
    assert none["breakdown_ms_per_step"] is None and none["breakdown_note"] == measure.ALL_PAUSED


@pytest.mark.slow
def test_interleaved_rounds_report_every_round(tmp_path):
    rows = ["handwritten-adam", "widedeep-adam"]
    cmd = [sys.executable, str(SCRIPT), "--rows", "6000", "--batch-size", "256"]
    cmd += ["--steps", "20", "--warmup", "2", "--rows-only", ",".join(rows)]
    cmd += ["--interleave", "0.3", "--repeat", "2"]
    cmd += ["--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    done = run_benchmark(cmd)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "results" / "throughput.json").read_text())
    assert len(report["rounds"]) == 2
    for round_ in report["rounds"]:
        for r in round_:
            # Each process ran in several turns, and was timed only while it ran.
            assert r["slices"] > 1, r["row"]
            assert 0 < r["train"]["steady_seconds"] <= r["ran_seconds"]
    combined = {r["row"]: r for r in report["results"]}
    all_paused = load_part("measure").ALL_PAUSED
    for name in rows:
        per_round = [r for round_ in report["rounds"] for r in round_ if r["row"] == name]
        mean = sum(r["train"]["samples_per_s"] for r in per_round) / 2
        assert combined[name]["train"]["samples_per_s"] == pytest.approx(mean)
        # A breakdown, or (on a busy machine a pause can cut every steady step) the reason.
        for r in [*per_round, combined[name]]:
            b, note = r["train"]["breakdown_ms_per_step"], r["train"]["breakdown_note"]
            assert (b and b["total"] > 0) or (b is None and note == all_paused), r["train"]
        steps = [b["total"] for r in per_round if (b := r["train"]["breakdown_ms_per_step"])]
        if steps:
            step = sum(steps) / len(steps)
            assert combined[name]["train"]["breakdown_ms_per_step"]["total"] == pytest.approx(step)
    names = [t["target"] for t in report["targets"]]
    assert "widedeep-adam >= 0.95x handwritten-adam (same optimizer)" in names, names
    for target in report["targets"]:  # every target these rows decide, in both rounds
        assert len(target["rounds"]) == 2 and 0 <= target["met_rounds"] <= 2, target
    assert "rows interleaved in turns of 0.3 s, mean of 2 rounds" in done.stdout
    assert "each round" in done.stdout


def test_allocator_settings_per_row(monkeypatch):
    from widedeep.core.allocator import MALLOC_ENV

    tp, rounds = load_part("spec"), load_part("rounds")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1")  # inherited settings never leak into a row
    tuned, system = tp.Settings(), tp.Settings(system_malloc=True)
    names = ("handwritten-sparse", "widedeep-sparse", "deepctr-torch")
    hand, ours, peer = (tp.ROW_BY_NAME[n] for n in names)
    assert rounds.row_environment(hand, tuned).items() >= MALLOC_ENV.items()
    for spec in (ours, peer):  # widedeep calls keep_freed_memory itself; peers as they ship
        env = rounds.row_environment(spec, tuned)
        assert not set(MALLOC_ENV) & set(env) and "WIDEDEEP_MALLOC" not in env
    for spec in (hand, ours, peer):
        env = rounds.row_environment(spec, system)
        assert not set(MALLOC_ENV) & set(env) and env["WIDEDEEP_MALLOC"] == "system"


def test_bad_interleave_is_refused(tmp_path):
    tp = load_throughput()
    with pytest.raises(SystemExit, match="--interleave must be > 0"):
        tp.main(["--interleave", "0", "--work", str(tmp_path)])


@pytest.mark.slow
def test_own_rows_run_and_report(tmp_path):
    from widedeep.core.cpu import cpu_has_bf16

    # The bf16 loop where the CPU runs it (elsewhere the benchmark leaves it out).
    rows = ROWS + (["handwritten-sparse-bf16"] if cpu_has_bf16() else [])
    cmd = [sys.executable, str(SCRIPT), "--rows", "3000", "--batch-size", "256"]
    cmd += ["--steps", "8", "--warmup", "2", "--rows-only", ",".join(rows)]
    cmd += ["--out", str(tmp_path / "results"), "--work", str(tmp_path / "work")]
    done = run_benchmark(cmd)
    assert done.returncode == 0, done.stdout + done.stderr

    markdown = (tmp_path / "results" / "throughput.md").read_text()
    assert markdown == done.stdout.rstrip("\n") + "\n"
    cells = table(markdown)
    assert cells[0] == COLUMNS
    body = {row[0]: row for row in cells[2:]}
    assert list(body) == rows
    for row in body.values():
        assert len(row) == len(COLUMNS), row
        assert number(row[2]) > 0 and number(row[5]) > 0, row  # train, inference samples/s
        assert number(row[3]) > 0, row  # every row here has a hand-written reference
        assert "ms" in row[9], row  # outside forward/backward/step, for own rows
    assert body["handwritten-adam"][3] == "1.00x"
    assert "(handwritten-adam)" in body["widedeep-adam"][3]

    report = json.loads((tmp_path / "results" / "throughput.json").read_text())
    assert report["ceiling_train"] > 0 and report["gflops"] > 0
    results = {r["row"]: r for r in report["results"]}
    assert set(results) == set(rows)
    assert results["handwritten-sparse"]["row_info"]["precision"] == "32-true"
    if "handwritten-sparse-bf16" in results:
        assert results["handwritten-sparse-bf16"]["row_info"]["precision"] == "bf16-mixed"
        assert body["handwritten-sparse-bf16"][3] == "1.00x"  # its own reference
    for r in results.values():
        assert r["train"]["steps"] == 8 and r["train"]["steady_steps"] == 6
        assert r["inference"]["rows"] == 3000
        assert r["peak_rss_mib"] > 0 and r["params"] > 0
    # The same model everywhere: widedeep and the plain module have the same parameter count.
    assert results["widedeep-adam"]["params"] == results["handwritten-adam"]["params"]
    assert any(t["target"].startswith("widedeep-adam >=") for t in report["targets"])


def test_a_row_that_crashed_is_reported_with_how_it_ended(tmp_path):
    """A row killed by a signal leaves no traceback: its table row names the signal, not just
    the log's last line (on the Xeon, deepctr-torch's log ended in profiler chatter)."""
    rounds, report, spec = load_part("rounds"), load_part("report"), load_part("spec")
    log = tmp_path / "row.log"
    log.write_text("Train on 100 samples\nprofiler_stop\n")
    proc = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"])
    proc.wait()
    row_spec = spec.RowSpec(name="peer", system="deepctr-torch", optimizer="Adam")
    row = rounds.Launched(row_spec, proc, tmp_path / "none.json", log, resumed=None)
    out = rounds.finish(row, others_cpu_share=0.0, load_before=0.0)
    assert out["exit"] == "killed by SIGKILL"
    assert report.table_row(out).startswith("| peer | failed (killed by SIGKILL): profiler_stop |")
    assert rounds.exit_status(3) == "exit 3"
