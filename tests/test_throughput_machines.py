"""benchmarks/throughput.py's bookkeeping per machine: the CPU's flags in every results file,
bf16 rows only where the CPU has bf16, a profile per row, the new targets, TorchRec's venv."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def _script():
    return load_script(SCRIPT)


def _part(name: str):
    _script()  # puts benchmarks/ on sys.path, as running the script does
    return importlib.import_module(f"throughput_parts.{name}")


MACHINE = {"cpu": "Some CPU 9000", "cores": 2, "flags": ["avx2", "avx512f"], "bf16": False}


def test_bf16_rows_run_only_where_the_cpu_has_bf16_and_the_results_say_so():
    script = _script()
    with_bf16 = script.select_rows(None, peers=False, bf16=True)
    without = script.select_rows(None, peers=False, bf16=False)
    bf16_rows = [r.name for r in with_bf16 if r.bf16]
    assert bf16_rows and not [r for r in without if r.bf16]
    assert {r.name for r in with_bf16} - {r.name for r in without} == set(bf16_rows)
    note = script.bf16_note(MACHINE, with_bf16, without)
    assert all(name in note for name in bf16_rows)
    assert "Some CPU 9000" in note and "avx512_bf16" in note
    assert script.bf16_note(MACHINE, with_bf16, with_bf16) is None
    # the compiled row is a default row now
    assert "widedeep-sparse-compile" in {r.name for r in without}


def _report(results, machine=MACHINE, note=None):
    return {
        "command": "python benchmarks/throughput.py",
        "date": "today",
        "rows": 400,
        "train_rows_note": "one epoch",
        "run_note": "one run",
        "settings": {
            "batch_size": 100,
            "eval_batch_size": 100,
            "threads": 1,
            "warmup": 1,
            "profile_steps": 2,
        },
        "machine": {**machine, "load_start": 0.0, "load_end": 0.0},
        "gflops": 1.0,
        "ceiling_train": 1.0,
        "ceiling_inference": 1.0,
        "results": results,
        "targets": [],
        "bf16_note": note,
    }


def test_header_names_the_cpu_its_cores_and_flags():
    report = _part("report")
    text = report.render(_report([]))
    header = [line for line in text.splitlines() if line.startswith("CPU:")]
    assert len(header) == 1
    assert "Some CPU 9000" in header[0] and "2 cores" in header[0]
    assert "avx2, avx512f" in header[0] and "bf16 in hardware: no" in header[0]
    assert "bf16: it was skipped." in report.render(_report([], note="it was skipped"))


def test_results_file_is_named_after_the_machine():
    machine = _part("machine")
    assert machine.cpu_slug("AMD EPYC 9B45 64-Core Processor") == "amd-epyc-9b45-64-core-processor"
    assert machine.cpu_slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-r-xeon-r-cpu-2-20ghz"
    report = machine.cpu_report()
    assert set(report["flags"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


def test_profile_covers_the_last_warmup_steps_only():
    import torch

    measure = _part("measure")
    clock = measure.StepClock(0.0, 10, 120, warmup=4, profile_steps=2)  # 12 steps
    a = torch.randn(64, 64)
    for _ in range(6):
        a @ a
        clock.step_done()
        assert (clock.profile != []) == (len(clock.ends) >= 4)
    assert len(clock.ends) == 6
    ops = {p["op"] for p in clock.profile}
    assert "aten::mm" in ops
    mm = next(p for p in clock.profile if p["op"] == "aten::mm")
    assert mm["calls_per_step"] == 1  # two profiled steps, one matmul each
    assert clock.profile[0]["steps"] in (1, 2)  # a step slower by half than the other is out
    quiet = measure.StepClock(0.0, 10, 60, warmup=4, profile_steps=0)
    for _ in range(6):
        quiet.step_done()
    assert quiet.profile == []


def test_a_peer_row_never_starts_the_profiler_inside_its_optimizer_step(monkeypatch):
    """A peer's steps end in an optimizer step hook, inside torch's "Optimizer.step" profiler
    range; starting or stopping torch.profiler there crashed every peer row (SIGSEGV). Its
    profile turns come from a forward pre-hook instead, and all in the warm-up steps."""
    import torch

    measure, peer_rows = _part("measure"), _part("peer_rows")
    in_step, turns = [False], []

    class Recorder(torch.profiler.profile):
        def start(self):
            turns.append(("start", in_step[0], len(clock.ends)))
            super().start()

        def stop(self):
            turns.append(("stop", in_step[0], len(clock.ends)))
            super().stop()

    monkeypatch.setattr(torch.profiler, "profile", Recorder)
    clock = measure.StepClock(0.0, 8, 240, warmup=6, profile_steps=3)

    class Row:  # a peer's own loop: the clock only sees its optimizer hook
        def __init__(self, *_):
            self.model, self.num_params = torch.nn.Linear(4, 1), 5
            self.opt = torch.optim.Adam(self.model.parameters())
            self.opt.register_step_pre_hook(lambda *_: in_step.__setitem__(0, True))

        def train(self, rows, on_step):
            def post(*_):
                on_step()
                in_step[0] = False

            self.opt.register_step_post_hook(post)
            for _ in range(rows // 8):
                self.model(torch.randn(8, 4)).sum().backward()
                self.opt.step()

        def predict(self, rows):
            self.model(torch.randn(rows, 4))

    spec, real_import = _part("spec"), importlib.import_module
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name, package=None: (
            type("M", (), {"Row": Row})
            if name.startswith("_peers.")
            else real_import(name, package)
        ),
    )
    settings = spec.Settings(batch_size=8, eval_batch_size=8, infer_rows=16, warmup=6)
    peer_rows.run_peer(
        spec.RowSpec("peer", "deepctr-torch", "Adam"), {"label": [0] * 240}, settings, clock
    )
    assert len(clock.ends) == 30 and turns
    assert not any(inside for _, inside, _ in turns)  # never inside the optimizer step
    warmup = clock.summary()["warmup_steps"]
    assert warmup == 6 and max(done for _, _, done in turns) < warmup  # timed steps unprofiled
    assert clock.profile and clock.profile[0]["steps"] in (1, 2, 3)


def test_a_run_shorter_than_the_warmup_profiles_within_it_and_stops_the_profiler():
    """--rows 20000 at batch 4096 is 5 steps against a warm-up of 10: the profile window must
    end before the last step, or the profiler runs on through inference (and crashed the row at
    exit), and inside the summary's warm-up, or it would slow the timed steps."""
    import torch

    measure = _part("measure")
    clock = measure.StepClock(0.0, 10, 95, warmup=10, profile_steps=5)  # 9 full batches + 1
    a = torch.randn(64, 64)
    for _ in range(9):  # a compiled loop drops the last partial batch
        a @ a
        clock.step_done()
    assert getattr(clock, "_profiler", None) is None  # stopped, none left running
    warmup = clock.summary()["warmup_steps"]
    assert warmup == clock.warmup_steps(len(clock.ends)) < clock.warmup
    assert clock.profile and clock.profile[0]["steps"] <= warmup - 1


def test_a_profiled_step_cut_by_a_pause_is_left_out():
    import time

    import torch

    measure = _part("measure")
    assert [w for w, _ in measure.unpaused([(0.10, "a"), (1.2, "b"), (0.12, "c")])] == [0.10, 0.12]
    clock = measure.StepClock(0.0, 10, 200, warmup=5, profile_steps=3)  # 20 steps
    a = torch.randn(256, 256)
    for step in range(1, 8):
        for _ in range(20):
            a @ a
        if step == 4:  # a profiled step, stopped for a turn as --interleave does
            time.sleep(0.5)
        clock.step_done()
    # The paused step (half a second against milliseconds) is out; of the other two, one may be
    # too, on a loaded machine (the filter keeps steps within 1.5x of the fastest).
    assert clock.profile[0]["steps"] in (1, 2)


def _row(name: str, system: str, train: float, infer: float, of_ceiling: float = 0.6) -> dict:
    return {
        "row": name,
        "system": system,
        "train": {"samples_per_s": train},
        "inference": {"samples_per_s": infer},
        "train_of_ceiling": of_ceiling,
        "inference_of_ceiling": of_ceiling,
    }


def test_targets_against_torchrec_bf16_the_fastest_loop_and_the_ceiling():
    report = _part("report")
    rows = [
        _row("widedeep-sparse", "widedeep", 100.0, 400.0),
        _row("widedeep-sparse-bf16", "widedeep", 180.0, 500.0, of_ceiling=0.9),
        _row("handwritten-sparse-compile", "hand-written", 200.0, 450.0),
        _row("torchrec", "torchrec", 150.0, 300.0),
    ]
    got = {t["key"]: t for t in report.targets(rows)}
    assert got["bf16-vs-fp32"]["value"] == pytest.approx(180 / 100)
    assert got["bf16-vs-fp32"]["met"] is True  # 1.8x >= 1.5x
    assert got["train-vs-torchrec"]["value"] == pytest.approx(180 / 150)
    assert got["train-vs-fastest-handwritten"]["value"] == pytest.approx(180 / 200)
    assert got["train-vs-fastest-handwritten"]["met"] is False  # 0.9x < 0.95x
    assert got["train-of-ceiling"]["value"] == 0.9 and got["train-of-ceiling"]["met"]
    shown = {**got["train-of-ceiling"], "rounds": [0.9, 0.8], "met_rounds": 2}
    text = report.render({**_report([]), "targets": [shown]})
    assert "| 90% | 90%, 80% | yes (2/2 rounds) |" in text  # a share, not a ratio


def test_torchrec_row_without_its_venv_fails_naming_the_setup_script(tmp_path, monkeypatch):
    peer_rows = _part("peer_rows")
    monkeypatch.setenv("TORCHREC_VENV", str(tmp_path / "none"))
    problem = peer_rows.torchrec_python()
    assert isinstance(problem, str) and "benchmarks/torchrec/setup.sh" in problem
    spec = _part("spec")
    assert spec.ROW_BY_NAME["torchrec"].venv == "torchrec"
    assert spec.ROW_BY_NAME["torchrec"].peer  # with --peers, never in widedeep's venv


def test_bf16_widedeep_row_is_measured_against_the_bf16_hand_written_loop():
    spec, report, script = _part("spec"), _part("report"), _script()
    named = spec.ROW_BY_NAME
    ours, loop = named["widedeep-sparse-bf16"], named["handwritten-sparse-bf16"]
    fp32 = named["handwritten-sparse"]
    assert ours.reference == loop.name
    # handwritten-sparse's loop and optimizers, in widedeep-sparse-bf16's precision
    assert loop.system == "hand-written" and loop.sparse and loop.fused and not loop.compile
    assert (fp32.sparse, fp32.fused) == (loop.sparse, loop.fused)
    assert loop.bf16 and loop.optimizer == ours.optimizer
    # Run only where the CPU has bf16 instructions, and the results say it was not run.
    asked = script.select_rows(None, peers=False, bf16=True)
    ran = script.select_rows(None, peers=False, bf16=False)
    assert loop in asked and loop not in ran
    assert loop.name in script.bf16_note(MACHINE, asked, ran)

    rows = [
        _row("handwritten-sparse", "hand-written", 100.0, 400.0),
        _row("handwritten-sparse-bf16", "hand-written", 200.0, 900.0),
        _row("widedeep-sparse", "widedeep", 98.0, 400.0),
        _row("widedeep-sparse-bf16", "widedeep", 180.0, 880.0),
    ]
    report.add_ratios(rows, gflops=1.0)
    by_name = {r["row"]: r for r in rows}
    assert by_name["widedeep-sparse-bf16"]["vs_handwritten_row"] == "handwritten-sparse-bf16"
    assert by_name["widedeep-sparse-bf16"]["vs_handwritten"] == pytest.approx(180 / 200)
    assert by_name["widedeep-sparse"]["vs_handwritten_row"] == "handwritten-sparse"
    got = {t["key"]: t for t in report.targets(rows)}
    bf16 = got["widedeep-sparse-bf16"]
    assert bf16["target"] == (
        "widedeep-sparse-bf16 >= 0.95x handwritten-sparse-bf16 (same optimizer and precision)"
    )
    assert bf16["value"] == pytest.approx(0.9) and bf16["met"] is False
    assert got["widedeep-sparse"]["met"] is True  # 0.98x: the fp32 target is still there
    # The fastest of each: bf16 against bf16 when both ran.
    fastest = got["train-vs-fastest-handwritten"]
    assert "(widedeep-sparse-bf16)" in fastest["target"]
    assert "(handwritten-sparse-bf16)" in fastest["target"]
    assert fastest["value"] == pytest.approx(180 / 200)
    # Without the bf16 loop (a CPU without bf16 runs neither) there is nothing to compare with.
    rows = [r for r in rows if r["row"] != "handwritten-sparse-bf16"]
    report.add_ratios(rows, gflops=1.0)
    assert "widedeep-sparse-bf16" not in {t["key"] for t in report.targets(rows)}


def test_bf16_hand_written_rows_run_forward_under_bf16_autocast_only():
    import torch

    spec, rows = _part("spec"), _part("handwritten_rows")
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with rows.precision(spec.ROW_BY_NAME["handwritten-sparse-bf16"], "cpu"):
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights stay fp32
    with rows.precision(spec.ROW_BY_NAME["handwritten-sparse"], "cpu"):
        assert layer(x).dtype == torch.float32


def test_fuxictr_row_runs_in_fuxictrs_venv_or_says_how_to_make_it(tmp_path, monkeypatch):
    spec, peer_rows, script = _part("spec"), _part("peer_rows"), _script()
    row = spec.ROW_BY_NAME["fuxictr"]
    assert row.peer and row in script.select_rows(None, peers=True)
    assert row not in script.select_rows(None, peers=False)
    assert row.venv == "fuxictr"  # started with FuxiCTR's interpreter, never widedeep's
    assert row.reference == "handwritten-adam"  # torch's Adam, as the other peers
    # No venv: the row's error in the table is the setup command.
    monkeypatch.setenv("FUXICTR_VENV", str(tmp_path / "none"))
    problem = peer_rows.fuxictr_python()
    assert isinstance(problem, str) and "benchmarks/fuxictr/setup.sh" in problem
    assert "no FuxiCTR venv at" in problem and str(tmp_path / "none") in problem
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    monkeypatch.setenv("FUXICTR_VENV", str(venv))
    assert peer_rows.fuxictr_python() == venv / "bin" / "python"


def test_fuxictr_feature_map_holds_the_benchmarks_fields():
    data, fuxictr_row = _part("data"), importlib.import_module("_peers.fuxictr_row")
    cards = data.cardinalities()
    fmap = fuxictr_row.feature_map_json(cards, num_dense=13)
    features = {k: v for x in fmap["features"] for k, v in x.items()}
    numeric = [k for k, v in features.items() if v["type"] == "numeric"]
    categorical = [v for v in features.values() if v["type"] == "categorical"]
    assert numeric == [f"I{j + 1}" for j in range(13)]
    assert [v["vocab_size"] for v in categorical] == cards  # every id the data holds fits
    assert all(v["padding_idx"] == 0 for v in categorical)  # the data's ids start at 2
    assert fmap["labels"] == ["label"] and fmap["dataset_id"] == fuxictr_row.DATASET_ID
