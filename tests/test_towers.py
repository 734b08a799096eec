"""The towers as plain modules: shapes, gradients, padding and the one-hot equivalence."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch

from widedeep import DeepTower, FieldEmbedding, Schema, WideDeep, WideTower
from widedeep.nn.embedding import mark_coalesced


def one_hot_design(schema: Schema, batch) -> torch.Tensor:
    """The wide tower's design matrix written out independently: one column per (field, id)."""
    blocks = []
    ids = torch.cat([batch.categorical, batch.crosses], 1)
    for j, f in enumerate((*schema.categorical, *schema.crosses)):
        block = torch.nn.functional.one_hot(ids[:, j], f.cardinality).double()
        blocks.append(block[:, 1:])  # id 0 = missing has no column
    for (values, offsets), f in zip(batch.bags, schema.bags, strict=True):
        block = torch.zeros(len(batch), f.cardinality, dtype=torch.double)
        ends = torch.cat([offsets[1:], torch.tensor([len(values)])])
        for b in range(len(batch)):
            for v in values[offsets[b] : ends[b]]:
                block[b, v] += 1.0
        blocks.append(block[:, 1:])
    return torch.cat(blocks, 1)


def test_towers_return_one_logit_per_row(schema):
    batch = random_batch(schema, 32)
    wide, deep = WideTower(schema, use_dense=True), DeepTower(schema, embedding_dim=4, hidden=(8,))
    model = WideDeep(WideTower(schema, bias=False), DeepTower(schema, hidden=(8,), bias=False))
    for module in (wide, deep, model):
        assert module(**batch.inputs()).shape == (32,)
    parts = model.parts(**batch.inputs())
    torch.testing.assert_close(parts.logit, parts.wide + parts.deep + model.bias)


def test_wide_tower_is_a_linear_model_over_the_one_hot_design(schema):
    torch.manual_seed(0)
    tower = WideTower(schema).double()
    with torch.no_grad():
        tower.weights.weight[1:].normal_()
        tower.bias.fill_(0.3)
    batch = random_batch(schema, 64, seed=1)
    design = one_hot_design(schema, batch)
    expected = design @ tower.weights.weight[1:, 0] + 0.3
    torch.testing.assert_close(tower(**batch.inputs()), expected)


def test_gradients_reach_both_towers(schema):
    model = WideDeep(WideTower(schema, bias=False), DeepTower(schema, hidden=(8,), bias=False))
    batch = random_batch(schema, 64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(**batch.inputs()), batch.label
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_missing_ids_contribute_nothing(schema):
    torch.manual_seed(0)
    wide = WideTower(schema)
    deep = DeepTower(schema, embedding_dim=4, hidden=(8,))
    with torch.no_grad():
        wide.weights.weight.normal_()  # even a non-zero padding row must be ignored
        wide.bias.fill_(0.7)
    batch = random_batch(schema, 16)
    batch.categorical.zero_()
    batch.crosses.zero_()
    batch.bags = [(torch.zeros(5, dtype=torch.long), torch.tensor([0] * 15 + [0]))]
    torch.testing.assert_close(wide(**batch.inputs()), torch.full((16,), 0.7))
    # Deep: a row with every field missing looks like a row of zero embeddings.
    embedded = deep.tables[0](batch.categorical)
    assert torch.count_nonzero(embedded) == 0
    loss = deep(**batch.inputs()).sum()
    loss.backward()
    assert torch.count_nonzero(deep.tables[0].weight.grad) == 0


@pytest.mark.parametrize("with_missing", [True, False])
def test_sparse_lookup_has_torchs_padding_gradient(with_missing):
    """SparseLookup (the sparse tables' backward) gives torch's padding_idx gradient, coalesced."""
    torch.manual_seed(0)
    emb = FieldEmbedding([50, 7, 30], dim=4, sparse_min_rows=0)
    ids = torch.randint(0 if with_missing else 1, 7, (64, 3))
    assert bool((ids == 0).any()) == with_missing
    upstream = torch.randn(64, 3, 4)
    (emb(ids) * upstream).sum().backward()
    ours = emb.weight.grad
    reference = emb.weight.detach().clone().requires_grad_()
    vectors = torch.nn.functional.embedding(emb.rows(ids), reference, padding_idx=0, sparse=True)
    (vectors * upstream).sum().backward()
    assert ours.is_sparse and ours.is_coalesced()
    # Coalesced truly: distinct rows in increasing order, so the optimizers may skip the sort.
    rows = ours._indices()[0]
    assert bool((rows[1:] > rows[:-1]).all())
    assert set(rows.tolist()) - {0} == set(emb.rows(ids).flatten().tolist()) - {0}
    torch.testing.assert_close(ours.to_dense(), reference.grad.to_dense())
    torch.testing.assert_close(emb(ids), vectors)


def test_sparse_gradient_stays_flagged_coalesced_only_when_it_is():
    """Autograd drops the coalesced flag of SparseLookup's gradient; the table's hook restores
    it (so optimizers skip a sort), after a deep copy too, and only where the rows are
    distinct and sorted; SparseAdam's steps equal those on torch's own sparse gradient."""
    import copy

    torch.manual_seed(0)
    emb = FieldEmbedding([40, 40], dim=3, sparse_min_rows=0)
    reference = torch.nn.Parameter(emb.weight.detach().clone())
    ours_opt = torch.optim.SparseAdam([emb.weight], lr=0.1)
    ref_opt = torch.optim.SparseAdam([reference], lr=0.1)
    for step in range(4):
        ids = torch.randint(0, 40, (32, 2))
        upstream = torch.randn(32, 2, 3)
        ours_opt.zero_grad(set_to_none=True)
        ref_opt.zero_grad(set_to_none=True)
        (emb(ids) * upstream).sum().backward()
        assert emb.weight.grad.is_coalesced()
        if step % 2:  # a second backward accumulates into the gradient
            (emb(ids) * upstream).sum().backward()
        for _ in range(1 + step % 2):
            vectors = torch.nn.functional.embedding(emb.rows(ids), reference, 0, sparse=True)
            (vectors * upstream).sum().backward()
        ours_opt.step()
        ref_opt.step()
        torch.testing.assert_close(emb.weight, reference)
    twin = copy.deepcopy(emb)
    twin(torch.tensor([[3, 4]])).sum().backward()
    assert twin.weight.grad.is_coalesced()
    # The hook's test: strictly increasing rows only.
    for rows, coalesced in (([1, 3, 5], True), ([3, 1, 5], False), ([1, 3, 3], False)):
        twin.weight.grad = torch.sparse_coo_tensor(
            [rows], torch.ones(3, 3), twin.weight.shape, check_invariants=True
        )
        mark_coalesced(twin.weight)
        assert twin.weight.grad.is_coalesced() == coalesced


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.5),
        lambda p: torch.optim.Adagrad(p, lr=0.5),
        lambda p: torch.optim.SparseAdam(p, lr=0.5),
        lambda p: __import__("widedeep").FTRL(p, alpha=0.5),
    ],
)
def test_padding_row_stays_zero_under_sparse_optimizers(make_opt):
    torch.manual_seed(0)
    emb = FieldEmbedding([20, 20], dim=3, sparse_min_rows=0)
    opt = make_opt([emb.weight])
    for _ in range(5):
        ids = torch.randint(0, 20, (32, 2))  # about 1 in 20 missing
        opt.zero_grad()
        (emb(ids) ** 2 - emb(ids)).sum().backward()
        opt.step()
    assert torch.count_nonzero(emb.weight[0]) == 0
    assert torch.count_nonzero(emb.weight[1:]) > 0


def test_fields_do_not_share_rows():
    emb = FieldEmbedding([4, 3, 5], dim=1)
    rows = emb.rows(torch.tensor([[1, 1, 1], [3, 2, 4]]))
    assert rows.unique().numel() == 6 and rows.max() == emb.num_rows - 1
    assert emb.num_rows == 1 + 3 + 2 + 4


def test_per_field_embedding_dims_and_grouping(schema):
    deep = DeepTower(schema, embedding_dim=4, embedding_dims={"user": 6}, hidden=(8,))
    assert sorted(t.weight.shape[1] for t in deep.tables) == [4, 6]
    assert deep.mlp[0].in_features == 6 + 4 + 4 + 4 + schema.num_dense  # user, item, device, bag
    with pytest.raises(ValueError, match="unknown fields"):
        DeepTower(schema, embedding_dims={"nope": 3})


def test_sparse_tables_give_sparse_gradients(schema):
    wide = WideTower(schema, sparse_min_rows=0)
    batch = random_batch(schema, 8)
    wide(**batch.inputs()).sum().backward()
    assert wide.weights.weight.grad.is_sparse


def test_bad_settings_are_named():
    from widedeep import CategoricalField

    with pytest.raises(ValueError, match="cardinality"):
        CategoricalField("user", 1)
    with pytest.raises(ValueError, match="unknown fields"):
        Schema(crosses=(__import__("widedeep").CrossField("x", 5, fields=("a", "b")),))
    with pytest.raises(ValueError, match="activation"):
        DeepTower(Schema(dense=("a",)), activation="nope")
    with pytest.raises(ValueError, match="needs a wide tower"):
        WideDeep()


def test_wide_tower_trained_to_convergence_equals_logistic_regression():
    """Same one-hot design, same L2 penalty: the optimum must be sklearn's, coefficient for
    coefficient. sklearn minimises 0.5*|w|^2 + C*sum(loss); dividing by C*n gives
    mean(loss) + |w|^2 / (2*C*n), which is what we minimise here with L-BFGS in float64.
    Tolerance 1e-4: both solvers converge to ~1e-8 gradient norm on a strictly convex problem."""
    from sklearn.linear_model import LogisticRegression

    from widedeep import CategoricalField, CrossField

    schema = Schema(
        categorical=(CategoricalField("a", 6), CategoricalField("b", 5)),
        crosses=(CrossField("a_x_b", 14, fields=("a", "b")),),
    )
    n, C = 3000, 0.5
    batch = random_batch(schema, n, seed=3)
    design = one_hot_design(schema, batch)
    true_w = torch.randn(design.shape[1], generator=torch.Generator().manual_seed(4)).double()
    prob = torch.sigmoid(design @ true_w - 0.5)
    batch.label = torch.bernoulli(prob, generator=torch.Generator().manual_seed(5)).float()

    sk = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(
        design.numpy(), batch.label.numpy()
    )

    tower = WideTower(schema).double()
    label = batch.label.double()
    opt = torch.optim.LBFGS(
        tower.parameters(),
        max_iter=500,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(tower(**batch.inputs()), label)
        loss = loss + tower.weights.weight[1:].pow(2).sum() / (2 * C * n)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    ours = tower.weights.weight.detach()[1:, 0].numpy()
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(sk.coef_[0]), atol=1e-4, rtol=0)
    assert abs(tower.bias.item() - sk.intercept_[0]) < 1e-4
