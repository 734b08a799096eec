"""A SIGTERM that stops training inside widedeep-tune or widedeep-bench exits 143 with one
line, as widedeep-train does (docs/faults.md, "Preemption: SIGTERM and SLURM")."""

from __future__ import annotations

from pathlib import Path

import pytest

from widedeep.cli import bench, tune
from widedeep.training.run import Preempted


def _preempted(*_args, **_kwargs):
    raise Preempted("stopped by SIGTERM after training batch 3 (epoch 0)", Path("last.ckpt"))


@pytest.mark.parametrize(
    ("module", "target", "prog"),
    [(tune, "tune_arm", "widedeep-tune"), (bench, "bench", "widedeep-bench")],
)
def test_a_preempted_tuning_or_bench_run_exits_143(monkeypatch, capsys, module, target, prog):
    monkeypatch.setattr(module, target, _preempted)
    monkeypatch.setattr(tune, "train_overrides", lambda _overrides: [], raising=True)
    monkeypatch.setattr("hydra.core.hydra_config.HydraConfig.get", lambda: _Task())
    with pytest.raises(SystemExit) as stop:
        module._hydra_entry(_Cfg())
    assert stop.value.code == Preempted.EXIT_CODE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"{prog}: stopped by SIGTERM after training batch 3 (epoch 0)"]


class _Task:
    class overrides:  # noqa: N801  (HydraConfig's shape)
        task: list[str] = []


class _Cfg:
    class trainer:  # noqa: N801
        monitor = "auc"
