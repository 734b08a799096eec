"""widedeep's towers in your own model: a wide tower beside a factorization machine.

    python examples/fm_wide.py            # trains FM + wide and wide alone, prints test AUCs

`WideTower` and `FieldEmbedding` are plain ``nn.Module``s, so they compose with any other
architecture. Here the "deep" part is a factorization machine (Rendle 2010): every categorical
field gets a D-dim vector and the pairwise term sums ``<v_i, v_j>`` over field pairs, the
low-rank interactions a wide tower cannot generalise to unseen (user, item) pairs. The wide
tower keeps what an FM smooths away: one weight per id and per cross id (memorised exceptions).

The synthetic click log (`widedeep.data.readers.synthetic`) plants exactly these two kinds of
structure, so FM + wide should beat wide alone on held-out rows. `train_plain` is an ordinary
PyTorch loop over `BatchLoader`; `train_lightning` trains the same model with the project's
`WideDeepModule` (one optimizer per tower) by passing it as ``model=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_auroc

from widedeep import (
    BatchLoader,
    ColumnarData,
    CrossSpec,
    FeatureSpec,
    FieldEmbedding,
    Preprocessor,
    Schema,
    WideTower,
)
from widedeep.data.readers.synthetic import SyntheticConfig, generate

FIELDS = ("user", "item", "category", "hour", "device", "position")


class FactorizationMachine(nn.Module):
    """The pairwise term of an FM over categorical fields: (B, F) ids -> (B,) logits.

    sum_{i<j} <v_i, v_j> = 0.5 * sum_d((sum_i v_id)^2 - sum_i v_id^2), O(F * D) per row. Missing
    ids (0) map to `FieldEmbedding`'s zero padding row, so they add no interaction.
    """

    def __init__(self, schema: Schema, dim: int = 8, init_std: float = 0.01) -> None:
        super().__init__()
        self.embedding = FieldEmbedding([f.cardinality for f in schema.categorical], dim, None,
                                        init_std)

    def forward(self, categorical: Tensor, *args: object, **kwargs: object) -> Tensor:
        v = self.embedding(categorical)  # (B, F, D)
        total = v.sum(1)  # (B, D)
        return 0.5 * (total * total - (v * v).sum(1)).sum(1)


class FMWide(nn.Module):
    """logit = wide(x) + fm(x) + bias, with the keyword interface of `widedeep.WideDeep`.

    The attribute names are the contract with `WideDeepModule(model=...)`: ``wide`` and
    ``deep`` each get their own optimizer; the remaining parameters (the bias) go with ``wide``.
    ``fm=False`` gives the wide-only baseline with the same code path.
    """

    def __init__(self, schema: Schema, dim: int = 8, fm: bool = True) -> None:
        super().__init__()
        self.wide = WideTower(schema, bias=False)
        self.deep = FactorizationMachine(schema, dim) if fm else None
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(
        self,
        categorical: Tensor,
        crosses: Tensor,
        dense: Tensor | None = None,
        bags: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        logit = self.wide(categorical, crosses, dense, bags) + self.bias
        return logit + self.deep(categorical) if self.deep is not None else logit


@dataclass
class Data:
    schema: Schema
    train: ColumnarData
    test: ColumnarData


def synthetic_data(
    n_rows: int = 30_000, n_users: int = 400, n_items: int = 200, seed: int = 0
) -> Data:
    """The planted click log, split 80/20 and encoded with the public preprocessing API.

    Flat popularity and a strong rank-2 user-item affinity: most (user, item) pairs occur once
    or never, so memorising crosses cannot cover them and the affinity must be generalised,
    which is what the FM part is for. Few exceptions: what the crosses memorise is small here.
    """
    config = SyntheticConfig(
        n_rows=n_rows,
        n_users=n_users,
        n_items=n_items,
        affinity_scale=4.0,
        zipf_exponent=0.5,
        n_exceptions=100,
        exception_share=0.05,
        seed=seed,
    )
    frame = generate(config)
    is_train = np.random.default_rng(seed).random(frame.height) < 0.8
    spec = FeatureSpec(
        categorical=FIELDS,
        # (user, item) crosses memorise the planted exceptions; rare pairs stay unseen (id 1).
        crosses=(CrossSpec(("user", "item"), min_count=2), CrossSpec(("device", "hour"))),
    )
    pre = Preprocessor(spec).fit(frame.filter(is_train))
    schema = pre.schema

    def encode(mask: np.ndarray) -> ColumnarData:
        return ColumnarData.from_frame(pre.transform(frame.filter(mask)), schema)

    return Data(schema, encode(is_train), encode(~is_train))


@torch.no_grad()
def evaluate(model: nn.Module, data: ColumnarData) -> float:
    """Test AUC."""
    model.eval()
    scores, labels = [], []
    for batch in BatchLoader(data, 8192):
        scores.append(model(**batch.inputs()))
        labels.append(batch.label)
    return float(binary_auroc(torch.cat(scores), torch.cat(labels).long()))


def train_plain(
    model: nn.Module, data: Data, epochs: int = 3, lr: float = 0.02, seed: int = 0
) -> float:
    """A plain PyTorch loop (Adam, logistic loss); returns the test AUC."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = BatchLoader(data.train, 512, shuffle=True, seed=seed)
    for epoch in range(epochs):
        model.train()
        loader.sampler.set_epoch(epoch)  # a new, seeded permutation per epoch
        for batch in loader:
            loss = F.binary_cross_entropy_with_logits(model(**batch.inputs()), batch.label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return evaluate(model, data.test)


def train_lightning(model: FMWide, data: Data, epochs: int = 3, lr: float = 0.02) -> float:
    """The same model under the project's `WideDeepModule` (an optimizer per tower)."""
    import pytorch_lightning as pl

    from widedeep.training.module import WideDeepModule

    settings = {"name": "adam", "lr": lr}
    module = WideDeepModule(
        data.schema.to_dict(), optim={"wide": settings, "deep": settings}, model=model
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,  # evaluated below, on the test split
    )
    trainer.fit(module, train_dataloaders=BatchLoader(data.train, 512, shuffle=True))
    return evaluate(model, data.test)


if __name__ == "__main__":
    data = synthetic_data()
    for name, fm, train in [
        ("wide alone", False, train_plain),
        ("FM + wide", True, train_plain),
        ("FM + wide, WideDeepModule", True, train_lightning),
    ]:
        torch.manual_seed(0)  # the same initial weights for every run
        print(f"{name:<26} test AUC {train(FMWide(data.schema, fm=fm), data):.4f}")
