"""FTRL-Proximal against a NumPy transcription of the paper; sparsity, sparse grads, checkpoints."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from widedeep.optim.ftrl import FTRL

# float64 everywhere in the reference comparisons, so the only differences are rounding.
RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(autouse=True)
def _one_thread():
    """The problems are tiny: on a busy machine, BLAS threads only add seconds of contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


HYPERPARAMS = [  # (alpha, beta, l1, l2)
    (0.1, 1.0, 0.0, 0.0),
    (0.5, 1.0, 0.05, 0.0),
    (0.05, 0.5, 0.0, 1.0),
    (1.0, 0.0, 0.1, 0.5),
    (0.3, 2.0, 0.02, 0.1),
    (0.2, 0.0, 0.01, 0.0),  # beta == l2 == 0: the closed form divides by sqrt(n) alone
]


class PaperFTRL:
    """Algorithm 1 of McMahan et al. (KDD 2013), one coordinate at a time on NumPy arrays."""

    def __init__(self, z: np.ndarray, alpha: float, beta: float, l1: float, l2: float) -> None:
        self.z = z.astype(np.float64).copy()
        self.n = np.zeros_like(self.z)
        self.alpha, self.beta, self.l1, self.l2 = alpha, beta, l1, l2

    def weights(self) -> np.ndarray:
        w = np.zeros_like(self.z)
        for i in range(len(w)):
            if abs(self.z[i]) <= self.l1:
                w[i] = 0.0
            else:
                w[i] = -(self.z[i] - np.sign(self.z[i]) * self.l1) / (
                    (self.beta + math.sqrt(self.n[i])) / self.alpha + self.l2
                )
        return w

    def update(self, g: np.ndarray) -> None:
        w = self.weights()
        for i in np.flatnonzero(g):  # the paper only visits the features present in x_t
            sigma = (math.sqrt(self.n[i] + g[i] ** 2) - math.sqrt(self.n[i])) / self.alpha
            self.z[i] += g[i] - sigma * w[i]
            self.n[i] += g[i] ** 2


def paper_z_for(w0: np.ndarray, alpha: float, beta: float, l1: float, l2: float) -> np.ndarray:
    """A z for which the paper's closed form (with n = 0) gives back w0."""
    return -w0 * (beta / alpha + l2) - np.sign(w0) * l1


def start(d: int, init: str, hp: tuple[float, float, float, float], seed: int):
    """Same starting point for torch and the reference: the weight tensor and a PaperFTRL."""
    w0 = np.random.default_rng(seed).normal(size=d) if init == "random" else np.zeros(d)
    ref = PaperFTRL(paper_z_for(w0, *hp), *hp)
    np.testing.assert_allclose(ref.weights(), w0, rtol=RTOL, atol=ATOL)  # the start is right
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    return w, ref


@pytest.mark.parametrize(
    ("hp", "init"),
    [(hp, "zeros") for hp in HYPERPARAMS]
    # No z reproduces a non-zero w when beta == l2 == 0: see test_beta_and_l2_zero_start_...
    + [(hp, "random") for hp in HYPERPARAMS if hp[1] > 0 or hp[3] > 0],
)
def test_matches_paper_on_random_gradients(hp, init):
    alpha, beta, l1, l2 = hp
    d = 12
    w, ref = start(d, init, hp, seed=1)
    opt = FTRL([w], alpha=alpha, beta=beta, l1=l1, l2=l2)
    rng = np.random.default_rng(2)
    for _ in range(20):
        # Heavy-tailed gradients with exact zeros: coordinates that are not in x_t.
        g = rng.standard_t(3, size=d) * (rng.random(d) < 0.6)
        ref.update(g)
        w.grad = torch.tensor(g)
        opt.step()
        torch.testing.assert_close(w.detach(), torch.tensor(ref.weights()), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("hp", HYPERPARAMS)
def test_matches_paper_on_logistic_regression(hp):
    """The paper's own loop: each model computes p = sigmoid(x.w) and g = (p - y) x itself."""
    d, steps = 12, 20
    rng = np.random.default_rng(3)
    X = rng.normal(size=(steps, d)) * (rng.random((steps, d)) < 0.5)  # sparse-ish rows
    y = (rng.random(steps) < 0.5).astype(np.float64)
    w, ref = start(d, "zeros", hp, seed=4)
    opt = FTRL([w], alpha=hp[0], beta=hp[1], l1=hp[2], l2=hp[3])
    for x_t, y_t in zip(X, y, strict=True):
        p_t = 1.0 / (1.0 + math.exp(-(x_t @ ref.weights())))
        ref.update((p_t - y_t) * x_t)
        opt.zero_grad()
        logit = torch.tensor(x_t) @ w
        F.binary_cross_entropy_with_logits(logit, torch.tensor(y_t)).backward()
        opt.step()
        torch.testing.assert_close(w.detach(), torch.tensor(ref.weights()), rtol=RTOL, atol=ATOL)
    assert np.count_nonzero(ref.weights()) > 0  # the comparison was not between two zero vectors


def test_initial_weights_kept_by_a_zero_gradient_step():
    w0 = torch.randn(50, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    w = w0.clone().requires_grad_()
    opt = FTRL([w], alpha=0.1, beta=1.0, l1=0.3, l2=0.2)
    w.grad = torch.zeros_like(w)
    opt.step()
    torch.testing.assert_close(w.detach(), w0, rtol=RTOL, atol=ATOL)


def test_beta_and_l2_zero_start_from_z_zero():
    """Documented: no z reproduces w when beta == l2 == 0, so FTRL starts from z = 0 (w = 0)."""
    w = torch.randn(50, generator=torch.Generator().manual_seed(6)).requires_grad_()
    opt = FTRL([w], alpha=0.1, beta=0.0, l1=0.0, l2=0.0)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(opt.state[w]["z"], torch.zeros_like(w))
    assert torch.equal(w.detach(), torch.zeros_like(w))  # exact zeros, no NaN from 0/0


def _train_logistic(l1: float, steps: int = 200) -> tuple[torch.Tensor, float]:
    """Full-batch FTRL on 400 examples, 20 features of which only the first 3 matter."""
    g = torch.Generator().manual_seed(7)
    X = torch.randn(400, 20, generator=g, dtype=torch.float64)
    w_true = torch.zeros(20, dtype=torch.float64)
    w_true[:3] = torch.tensor([2.0, -2.0, 1.5])
    y = (torch.rand(400, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w_true)).double()
    w = torch.zeros(20, dtype=torch.float64, requires_grad=True)
    opt = FTRL([w], alpha=0.5, beta=1.0, l1=l1)
    for _ in range(steps):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(X @ w, y).backward()
        opt.step()
    with torch.no_grad():
        return w.detach(), F.binary_cross_entropy_with_logits(X @ w, y).item()


def test_l1_leaves_weights_exactly_zero():
    w_dense, _ = _train_logistic(l1=0.0)
    w_sparse, _ = _train_logistic(l1=15.0)
    w_empty, _ = _train_logistic(l1=1000.0)
    assert int((w_dense == 0).sum()) == 0
    # The 17 noise features are exactly 0; the 3 informative ones survive.
    assert torch.equal(w_sparse[3:], torch.zeros(17, dtype=torch.float64))
    assert bool((w_sparse[:3] != 0).all())
    assert int((w_empty == 0).sum()) == 20


def test_learns_a_logistic_problem():
    g = torch.Generator().manual_seed(8)
    X = torch.randn(256, 10, generator=g)
    y = (X @ torch.randn(10, generator=g) + 0.3 * torch.randn(256, generator=g) > 0).float()
    model = nn.Linear(10, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    opt = FTRL(model.parameters(), alpha=0.5, beta=1.0, l1=0.01, l2=0.01)

    def loss_fn() -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(X).squeeze(1), y)

    initial = loss_fn().item()
    for step in range(200):
        batch = torch.arange(step * 32, step * 32 + 32) % 256
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(X[batch]).squeeze(1), y[batch]).backward()
        opt.step()
    final = loss_fn().item()
    assert initial == pytest.approx(math.log(2))
    assert final < 0.5 * initial, (initial, final)


@pytest.mark.parametrize("kind", ["embedding", "embedding_bag"])
def test_sparse_and_dense_gradients_agree(kind):
    torch.manual_seed(9)
    make = {"embedding": nn.Embedding, "embedding_bag": nn.EmbeddingBag}[kind]
    sparse, dense = make(100, 4, sparse=True), make(100, 4, sparse=False)
    nn.init.normal_(sparse.weight, std=0.1)
    dense.load_state_dict(sparse.state_dict())
    w0 = sparse.weight.detach().clone()
    hp = {"alpha": 0.1, "beta": 1.0, "l1": 0.001, "l2": 0.01}
    opt_s, opt_d = FTRL(sparse.parameters(), **hp), FTRL(dense.parameters(), **hp)

    g = torch.Generator().manual_seed(10)
    coef = torch.randn(4, generator=g)
    for _ in range(6):
        ids = torch.randint(0, 60, (16, 5), generator=g)  # rows 60..99 are never used
        assert ids.unique().numel() < ids.numel()  # duplicates within the batch
        target = torch.randn(16, generator=g)
        for module, opt in ((sparse, opt_s), (dense, opt_d)):
            opt.zero_grad()
            out = module(ids)  # (16, 5, 4) or, summed per bag, (16, 4)
            score = (out * coef).sum(-1)
            score = score.sum(-1) if kind == "embedding" else score
            ((score - target) ** 2).mean().backward()
            opt.step()
        assert sparse.weight.grad.is_sparse and not dense.weight.grad.is_sparse

    torch.testing.assert_close(sparse.weight, dense.weight, rtol=0, atol=1e-6)
    assert torch.equal(sparse.weight[60:], w0[60:])  # untouched rows: bit for bit
    assert not torch.allclose(sparse.weight[:60], w0[:60])  # and the others did move


class _Tiny(nn.Module):
    """One sparse table and one dense layer, so the checkpoint holds both kinds of state."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.EmbeddingBag(30, 3, mode="sum", sparse=True)
        self.out = nn.Linear(3, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids)).squeeze(1)


def test_checkpoint_round_trip():
    hp = {"alpha": 0.2, "beta": 1.0, "l1": 0.01, "l2": 0.1}
    g = torch.Generator().manual_seed(11)
    batches = [
        (torch.randint(0, 30, (8, 4), generator=g), torch.randint(0, 2, (8,), generator=g).float())
        for _ in range(10)
    ]

    def train(model: nn.Module, opt: FTRL, steps) -> None:
        for ids, y in steps:
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(ids), y).backward()
            opt.step()

    torch.manual_seed(12)
    straight = _Tiny()
    resumed = _Tiny()
    resumed.load_state_dict(straight.state_dict())
    fresh = _Tiny()
    train(straight, FTRL(straight.parameters(), **hp), batches)

    opt = FTRL(resumed.parameters(), **hp)
    train(resumed, opt, batches[:4])
    buffer = io.BytesIO()
    torch.save({"model": resumed.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = _Tiny()
    resumed.load_state_dict(checkpoint["model"])
    fresh.load_state_dict(checkpoint["model"])
    opt = FTRL(resumed.parameters(), **hp)
    opt.load_state_dict(checkpoint["optim"])
    train(resumed, opt, batches[4:])
    # Control: the same weights without the optimizer state (z, n) take a different path.
    train(fresh, FTRL(fresh.parameters(), **hp), batches[4:])

    for a, b, c in zip(
        straight.parameters(), resumed.parameters(), fresh.parameters(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert not torch.allclose(c, a)


def test_closure_and_params_without_grad():
    w = torch.zeros(3, requires_grad=True)
    unused = torch.ones(3, requires_grad=True)
    opt = FTRL([w, unused], alpha=0.5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - torch.tensor([1.0, -2.0, 3.0])) ** 2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(14.0)
    assert bool((w != 0).all())
    assert torch.equal(unused.detach(), torch.ones(3)) and unused not in opt.state


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("alpha", 0.0),
        ("alpha", -0.1),
        ("alpha", float("nan")),
        ("beta", -1.0),
        ("l1", -0.5),
        ("l2", -1e-3),
        ("l2", float("nan")),
    ],
)
def test_bad_arguments(name, value):
    with pytest.raises(ValueError, match=re.escape(f"{name}={value!r}")):
        FTRL([torch.zeros(2, requires_grad=True)], **{name: value})
