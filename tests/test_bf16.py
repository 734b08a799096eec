"""trainer.precision=bf16-mixed: the MLP computes in bf16, every weight and FTRL's accumulators
stay fp32, and a CPU without bf16 instructions gets a one-line warning."""

from __future__ import annotations

import logging

import pytest
import pytorch_lightning as pl
import torch

from widedeep.cli.config import compose_config
from widedeep.core import cpu
from widedeep.training.run import ConfigError, train, validate

TINY = [
    "data.generator.n_rows=2000",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=256",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "optim=paper",  # FTRL on the wide tower, AdaGrad on the deep one
    "model.wide.sparse_min_rows=0",
    "model.deep.sparse_min_rows=0",
    "trainer.precision=bf16-mixed",
]


class Dtypes(pl.Callback):
    """The dtype of the deep MLP's first Linear output and of the logits, per training step."""

    def __init__(self) -> None:
        self.mlp: set[torch.dtype] = set()

    def on_train_start(self, trainer, pl_module) -> None:
        first = pl_module.model.deep.mlp[0]
        first.register_forward_hook(lambda m, i, out: self.mlp.add(out.dtype))


def test_bf16_mixed_keeps_wide_weights_and_ftrl_state_fp32(tmp_path):
    seen = Dtypes()
    metrics = train(compose_config(TINY, output_dir=str(tmp_path)), extra_callbacks=[seen])
    assert seen.mlp == {torch.bfloat16}, "the MLP did not run in bf16"
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    weights = ckpt["state_dict"]
    assert any(k.startswith("model.wide.") for k in weights)
    for key, value in weights.items():
        assert value.dtype == torch.float32, key
    ftrl, adagrad = ckpt["optimizer_states"]
    state = [t for s in ftrl["state"].values() for t in s.values() if torch.is_tensor(t)]
    assert state, "FTRL saved no accumulators"
    for tensor in state:
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32
    assert 0.0 <= metrics["test"]["auc"] <= 1.0


def test_bf16_on_a_cpu_without_it_warns_in_one_line(monkeypatch, caplog):
    monkeypatch.setattr(cpu, "cpu_has_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="widedeep"):
        validate(compose_config(["trainer.precision=bf16-mixed"]))
    lines = [r.getMessage() for r in caplog.records if "bf16" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "avx512_bf16" in lines[0]
    caplog.clear()
    monkeypatch.setattr(cpu, "cpu_has_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="widedeep"):
        validate(compose_config(["trainer.precision=bf16-mixed"]))
    assert not [r for r in caplog.records if "bf16" in r.getMessage()]


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-true", "fp8"])
def test_precisions_that_break_fp32_state_or_need_a_gpu_are_refused(precision):
    with pytest.raises(ConfigError, match="trainer.precision"):
        validate(compose_config([f"trainer.precision={precision}"]))


@pytest.mark.slow  # a script / example trained end to end: make test
def test_bf16_accuracy_script_on_tiny_input(tmp_path):
    """benchmarks/bf16_accuracy.py end to end on 2,000 rows: a row per seed, the CPU's flags."""
    import json
    from pathlib import Path

    from conftest import load_script

    script = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "bf16_accuracy.py")
    script.main(
        [
            "--datasets",
            "synthetic",
            "--seeds",
            "0,1",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(tmp_path / "work"),
            "--override",
            "data.generator.n_rows=1500",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
        ]
    )
    (report,) = (tmp_path / "out").glob("bf16-*.json")
    data = json.loads(report.read_text())
    assert [p["seed"] for p in data["pairs"]] == [0, 1]
    for pair in data["pairs"]:
        assert pair["auc_diff"] == pair["bf16-mixed"]["test_auc"] - pair["32-true"]["test_auc"]
    assert data["machine"]["bf16"] == cpu.cpu_has_bf16()
    assert "| synthetic | 1 |" in report.with_suffix(".md").read_text()
