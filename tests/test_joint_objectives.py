"""The joint objectives against co-adaptation (widedeep/training/joint.py): tower dropout,
auxiliary per-tower losses, held towers, per-tower stopping, and the objectives' plumbing
through the module (optimizers, eval mode, checkpoints)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_batch

from widedeep.training.joint import (
    JointSettings,
    TowerStop,
    joint_loss,
    paused,
    tower_masks,
    training_logit,
)
from widedeep.training.module import WideDeepModule

OPTIM = {"wide": {"name": "ftrl", "lr": 0.1, "l1": 0.01}, "deep": {"name": "adagrad", "lr": 0.05}}
DEEP = {"embedding_dim": 4, "hidden": [8], "dropout": 0.0}


def _logits(rows: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    wide, deep = torch.randn(rows, generator=g), torch.randn(rows, generator=g)
    label = (torch.rand(rows, generator=g) < 0.3).float()
    return wide, deep, torch.tensor([0.25]), label


def _module(schema, **joint) -> WideDeepModule:
    torch.manual_seed(0)
    settings = JointSettings.from_config({"kind": "wide_deep", **joint}).to_dict()
    return WideDeepModule(schema.to_dict(), "wide_deep", {}, DEEP, OPTIM, joint=settings)


def test_tower_dropout_zero_is_the_plain_loss_bit_for_bit_and_draws_nothing():
    wide, deep, bias, label = _logits()
    state = torch.get_rng_state()
    got = joint_loss(wide, deep, bias, label, JointSettings(tower_dropout=0.0))
    # No random draw: training with p = 0 takes the same dropout masks as without the option.
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(got, F.binary_cross_entropy_with_logits(wide + deep + bias, label))


def test_tower_dropout_one_half_gives_every_row_exactly_one_tower():
    keep_wide, keep_deep = tower_masks(10_000, 0.5, torch.device("cpu"))
    assert torch.equal(keep_wide ^ keep_deep, torch.ones(10_000, dtype=torch.bool))
    wide, deep, bias, _ = _logits(500)
    torch.manual_seed(3)
    z = training_logit(wide, deep, bias, 0.5)
    alone_wide, alone_deep = z == wide + bias, z == deep + bias
    assert bool((alone_wide ^ alone_deep).all())
    assert 0 < int(alone_wide.sum()) < 500  # both towers get rows


@pytest.mark.parametrize("p", [0.1, 0.2, 0.4])
def test_tower_dropout_draws_each_case_at_its_rate(p):
    torch.manual_seed(1)
    n = 200_000
    keep_wide, keep_deep = tower_masks(n, p, torch.device("cpu"))
    sd = math.sqrt(p * (1 - p) / n)  # each share is a binomial proportion
    assert abs(float((~keep_wide).float().mean()) - p) < 5 * sd  # deep alone
    assert abs(float((~keep_deep).float().mean()) - p) < 5 * sd  # wide alone
    assert not bool((~keep_wide & ~keep_deep).any())  # never neither tower


def test_a_row_drawing_both_towers_trains_on_exactly_its_evaluation_logit(schema):
    """The scaling decision (none): the evaluated model is the trained "both" branch."""
    module = _module(schema, tower_dropout=0.3)
    batch = random_batch(schema, 256)
    module.eval()
    with torch.no_grad():
        evaluated = module(batch)
        parts = module.model.parts(**batch.inputs())
        torch.manual_seed(5)
        trained = training_logit(parts.wide, parts.deep, module.model.bias, 0.3)
        torch.manual_seed(5)
        keep_wide, keep_deep = tower_masks(256, 0.3, evaluated.device)
    both = keep_wide & keep_deep
    assert 0 < int(both.sum()) < 256
    assert torch.equal(trained[both], evaluated[both])
    # Off at evaluation: the module's forward is the plain model's, whatever p.
    plain = _module(schema)
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(batch), evaluated)


def test_the_mean_training_logit_is_the_three_branch_mixture_not_the_evaluation_logit():
    """What not rescaling means for the mean: E[z_train] = (1 - p)(z_wide + z_deep) + b. The
    evaluated function is the "both" branch itself (previous test), not this mean."""
    p, n = 0.2, 200_000
    wide, deep, bias = torch.full((n,), 1.5), torch.full((n,), -0.5), torch.tensor([0.25])
    torch.manual_seed(2)
    z = training_logit(wide, deep, bias, p).double()
    branches = torch.tensor([1.5 + 0.25, -0.5 + 0.25, 1.0 + 0.25], dtype=torch.float64)
    weights = torch.tensor([p, p, 1 - 2 * p], dtype=torch.float64)
    mean = float((weights * branches).sum())
    sd = float((weights * (branches - mean) ** 2).sum().sqrt()) / math.sqrt(n)
    assert mean == pytest.approx((1 - p) * (1.5 - 0.5) + 0.25)
    assert abs(float(z.mean()) - mean) < 5 * sd


def test_aux_loss_adds_each_tower_alone_with_the_shared_bias():
    wide, deep, bias, label = _logits()

    def bce(z: torch.Tensor) -> torch.Tensor:  # written out, not the library's function
        p = torch.sigmoid(z)
        return -(label * torch.log(p) + (1 - label) * torch.log(1 - p)).mean()

    got = joint_loss(wide, deep, bias, label, JointSettings(aux_loss=0.5))
    want = bce(wide + deep + bias) + 0.5 * (bce(wide + bias) + bce(deep + bias))
    assert torch.allclose(got, want, rtol=1e-5)
    plain = joint_loss(wide, deep, bias, label, JointSettings(aux_loss=0.0))
    assert torch.equal(plain, F.binary_cross_entropy_with_logits(wide + deep + bias, label))


def test_tower_stop_freezes_each_tower_after_patience_flat_validations():
    stop = TowerStop(patience=2, min_delta=0.01)
    assert stop.update({"wide": 0.70, "deep": 0.60}, 0) == []
    assert stop.update({"wide": 0.705, "deep": 0.65}, 1) == []  # wide: not > best + 0.01
    assert stop.update({"wide": 0.70, "deep": 0.67}, 2) == ["wide"]
    assert stop.update({"wide": 0.90, "deep": 0.655}, 3) == []  # a stopped tower stays stopped
    assert stop.update({"wide": 0.90, "deep": 0.655}, 4) == ["deep"]
    assert stop.stopped == {"wide": 2, "deep": 4}
    again = TowerStop(patience=2)
    again.load_state_dict(stop.state_dict())
    assert again.state_dict() == stop.state_dict()


def test_paused_towers_are_the_held_and_the_stopped_ones():
    s = JointSettings(hold={"wide": 2, "deep": 0}, stop_patience=1)
    stop = TowerStop(1)
    assert paused(s, 0, stop) == {"wide"} and paused(s, 2, stop) == set()
    stop.stopped["deep"] = 2
    assert paused(s, 3, stop) == {"deep"}


def test_staged_runs_give_the_bias_and_combination_weights_their_own_optimizer(schema):
    module = _module(schema, combine=True, finetune={"lr_scale": 0.1, "hold": {"deep": 1}})
    optimizers, _ = module.configure_optimizers()
    assert module.optimizer_towers == ["wide", "deep", "rest"]
    rest = optimizers[2].param_groups[0]
    assert {id(p) for p in rest["params"]} == {id(module.model.bias), id(module.model.scale)}
    # The towers' learning rates are scaled, the rest keeps the wide tower's own.
    assert optimizers[0].param_groups[0]["lr"] == pytest.approx(OPTIM["wide"]["lr"] * 0.1)
    assert optimizers[1].param_groups[0]["lr"] == pytest.approx(OPTIM["deep"]["lr"] * 0.1)
    assert rest["lr"] == pytest.approx(OPTIM["wide"]["lr"])
    # Without staging, the groups are exactly as before: the bias with the wide tower.
    plain = _module(schema, tower_dropout=0.2)
    plain.configure_optimizers()
    assert plain.optimizer_towers == ["wide", "deep"]


def test_staged_sparse_tables_keep_their_sparse_optimizers_and_the_rest_gets_adam(schema):
    torch.manual_seed(0)
    optim = {t: {"name": "sparse_adam", "lr": 1e-3} for t in ("wide", "deep")}
    joint = JointSettings(stop_patience=1).to_dict()
    module = WideDeepModule(
        schema.to_dict(),
        "wide_deep",
        {"sparse_min_rows": 0},
        {**DEEP, "sparse_min_rows": 0},
        optim,
        joint=joint,
    )
    optimizers, _ = module.configure_optimizers()
    kinds = [type(o).__name__ for o in optimizers]
    assert list(zip(module.optimizer_towers, kinds, strict=True)) == [
        ("wide", "SparseAdam"),
        ("deep", "SparseAdam"),
        ("deep", "Adam"),
        ("rest", "Adam"),
    ]


def test_combination_weights_scale_each_tower_share(schema):
    module = _module(schema, combine=True)
    with torch.no_grad():
        module.model.scale.copy_(torch.tensor([0.5, 2.0]))
    plain = _module(schema)
    batch = random_batch(schema, 32)
    module.eval(), plain.eval()
    with torch.no_grad():
        got, ref = module.model.parts(**batch.inputs()), plain.model.parts(**batch.inputs())
    assert torch.allclose(got.wide, 0.5 * ref.wide) and torch.allclose(got.deep, 2.0 * ref.deep)
    assert "model.scale" not in plain.state_dict()  # off: the state dict is unchanged


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"tower_dropout": 0.6}, "model.tower_dropout=0.6"),
        ({"aux_loss": -1.0}, "model.aux_loss=-1.0"),
        ({"tower_dropout": 0.2, "kind": "deep"}, "model.kind='deep'"),
        ({"finetune": {"lr_scale": 0.0}}, "model.finetune.lr_scale=0.0"),
        ({"finetune": {"hold": {"wide": -1}}}, "model.finetune.hold.wide=-1"),
        ({"finetune": {"lr": 0.1}}, "model.finetune.lr: no such key"),
        ({"tower_stop": {"patience": 0}}, "model.tower_stop.patience=0"),
        ({"tower_stop": {"patience": 1}, "frozen": "deep"}, "model.frozen"),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_key(model, match):
    with pytest.raises(ValueError, match=match) as err:
        JointSettings.from_config({"kind": "wide_deep", **model})
    assert "\n" not in str(err.value)
