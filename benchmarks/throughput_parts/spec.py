"""What the benchmark runs: the model every system trains, the table's rows, the settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
ROOT = HERE.parent
SCRIPT = HERE / "throughput.py"  # the command line, and every row's worker (--worker)

# -- the model every system trains (issue 4, section 5) ------------------------------------------

NUM_DENSE = 13
# Values per categorical field (reserved ids excluded): 10 to 100,000, about 1.08M ids in all.
VALUES = (
    [10, 12, 15, 20, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000]
    + [10_000, 20_000, 30_000, 50_000, 70_000, 90_000]
    + [100_000] * 8
)
RESERVED = 2  # widedeep's ids 0 (missing) and 1 (unseen); data ids start at 2 in every system
EMBED_DIM = 16
HIDDEN = (400, 400, 400)
LR = 1e-3
ADAGRAD_LR = 0.05  # the rows with AdaGrad (the paper config's deep learning rate)
CLICK_RATE = 0.25
ZIPF_EXPONENT = 1.05


def mlp_flops_per_sample(train: bool) -> float:
    """Multiply-adds of the MLP's matmuls x2; training adds the two backward matmuls (x3)."""
    widths = [len(VALUES) * EMBED_DIM + NUM_DENSE, *HIDDEN, 1]
    forward = 2.0 * sum(a * b for a, b in itertools.pairwise(widths))
    return 3 * forward if train else forward


# -- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: a system and the configuration it runs."""

    name: str
    system: str  # widedeep | hand-written | pytorch-widedeep | deepctr-torch | torchrec | fuxictr
    optimizer: str  # what the table says
    reference: str | None = None  # the hand-written row with the same optimizer and precision
    overrides: tuple[str, ...] = ()  # widedeep: Hydra overrides of widedeep-train's config
    sparse: bool = False  # hand-written: sparse embedding gradients
    fused: bool = False  # hand-written: Adam(fused=True) for the dense parameters
    compile: bool = False  # torch.compile (hand-written: the last partial batch is dropped)
    bf16: bool = False  # bf16 autocast: run only where the CPU has bf16 instructions
    default: bool = True  # in the run without --rows-only

    @property
    def peer(self) -> bool:
        return self.system in ("pytorch-widedeep", "deepctr-torch", "torchrec", "fuxictr")

    @property
    def venv(self) -> str:
        """Whose environment runs the row: widedeep's own, the peers', TorchRec's or FuxiCTR's."""
        if self.system in ("torchrec", "fuxictr"):
            return self.system
        return "peers" if self.peer else "own"


# widedeep-train's own config (Hydra overrides), reshaped to the benchmark's model.
WIDEDEEP_BASE = (
    "model=wide_deep",
    f"model.deep.embedding_dim={EMBED_DIM}",
    f"model.deep.hidden=[{','.join(map(str, HIDDEN))}]",
    "model.deep.dropout=0.0",
    "model.wide.use_dense=false",
)
ADAM = ("optim=adam", f"optim.wide.lr={LR}", f"optim.deep.lr={LR}")
FUSED = ("+optim.wide.fused=true", "+optim.deep.fused=true")
SPARSE_TABLES = ("model.wide.sparse_min_rows=0", "model.deep.sparse_min_rows=0")
# SparseAdam for the tables; the towers' dense parameters get fused Adam, as in handwritten-sparse.
SPARSE_ADAM = (
    *ADAM,
    *FUSED,
    *SPARSE_TABLES,
    "optim.wide.name=sparse_adam",
    "optim.deep.name=sparse_adam",
)

ROWS: tuple[RowSpec, ...] = (
    RowSpec("handwritten-adam", "hand-written", "Adam"),
    RowSpec("handwritten-adam-fused", "hand-written", "Adam(fused)", fused=True),
    RowSpec(
        "handwritten-sparse", "hand-written", "SparseAdam + Adam(fused)", sparse=True, fused=True
    ),
    RowSpec(
        "handwritten-sparse-compile",
        "hand-written",
        "SparseAdam + Adam(fused), compiled",
        sparse=True,
        fused=True,
        compile=True,
    ),
    # handwritten-sparse under bf16 autocast (forward and loss; weights and optimizer states
    # fp32), the precision policy of Lightning's bf16-mixed: widedeep-sparse-bf16's reference.
    RowSpec(
        "handwritten-sparse-bf16",
        "hand-written",
        "SparseAdam + Adam(fused), bf16-mixed",
        sparse=True,
        fused=True,
        bf16=True,
    ),
    RowSpec("widedeep-adam", "widedeep", "Adam", "handwritten-adam", overrides=ADAM),
    RowSpec(
        "widedeep-adam-fused",
        "widedeep",
        "Adam(fused)",
        "handwritten-adam-fused",
        overrides=(*ADAM, *FUSED),
    ),
    RowSpec(
        "widedeep-sparse",
        "widedeep",
        "SparseAdam + Adam(fused)",
        "handwritten-sparse",
        overrides=SPARSE_ADAM,
    ),
    RowSpec(
        "widedeep-sparse-compile",
        "widedeep",
        "SparseAdam + Adam(fused), compiled",
        "handwritten-sparse-compile",
        overrides=(*SPARSE_ADAM, "trainer.compile=true"),
        compile=True,
    ),
    RowSpec(
        "widedeep-sparse-bf16",
        "widedeep",
        "SparseAdam + Adam(fused), bf16-mixed",
        "handwritten-sparse-bf16",
        overrides=(*SPARSE_ADAM, "trainer.precision=bf16-mixed"),
        bf16=True,
    ),
    RowSpec(
        "widedeep-sparse-ftrl",
        "widedeep",
        "FTRL (wide) + SparseAdam + Adam(fused) (deep)",
        overrides=(
            *ADAM,
            "+optim.deep.fused=true",  # FTRL takes no fused option
            *SPARSE_TABLES,
            "optim.wide.name=ftrl",
            "optim.wide.lr=0.05",
            "optim.deep.name=sparse_adam",
        ),
        default=False,
    ),
    RowSpec(
        "widedeep-paper-sparse",
        "widedeep",
        "FTRL (wide) + Adagrad (deep)",
        overrides=("optim=paper", *SPARSE_TABLES),  # the paper's own learning rates
        default=False,
    ),
    # TorchRec's like-for-like: fbgemm's CPU kernels have no fused Adam (_peers/torchrec_row.py).
    RowSpec(
        "widedeep-sparse-adagrad",
        "widedeep",
        "AdaGrad (sparse tables, MLP)",
        overrides=(
            *ADAM,
            *SPARSE_TABLES,
            "optim.wide.name=adagrad",
            "optim.deep.name=adagrad",
            f"optim.wide.lr={ADAGRAD_LR}",
            f"optim.deep.lr={ADAGRAD_LR}",
        ),
        default=False,
    ),
    RowSpec("pytorch-widedeep", "pytorch-widedeep", "Adam", "handwritten-adam"),
    RowSpec("deepctr-torch", "deepctr-torch", "Adam", "handwritten-adam"),
    RowSpec("torchrec", "torchrec", "fused AdaGrad (fbgemm tables) + AdaGrad"),
    # FuxiCTR's fit clips the gradient norm at 10 every step (_peers/fuxictr_row.py).
    RowSpec("fuxictr", "fuxictr", "Adam, grad-norm clip 10", "handwritten-adam"),
)
ROW_BY_NAME = {r.name: r for r in ROWS}
# The peers' venv (benchmarks/requirements-peers.txt) imports these; TorchRec has its own.
PEER_MODULES = {"pytorch-widedeep": "pytorch_widedeep_row", "deepctr-torch": "deepctr_row"}
ROW_MODULES = {**PEER_MODULES, "torchrec": "torchrec_row", "fuxictr": "fuxictr_row"}


@dataclass(frozen=True)
class Settings:
    """What every worker needs besides the data; passed on the command line as JSON."""

    batch_size: int = 4096
    eval_batch_size: int = 8192
    threads: int = 2
    warmup: int = 10
    steps: int | None = None  # at most this many training steps (the smoke test)
    infer_rows: int | None = None  # rows scored in the inference pass (None: all)
    infer_passes: int = 3  # inference passes; the median one is reported
    system_malloc: bool = False  # widedeep and hand-written rows without keep_freed_memory
    peer_workers: int | None = None  # pytorch-widedeep's DataLoader workers (None: its default)
    profile_steps: int = 5  # warm-up steps profiled (torch.profiler top ops); 0: none
    device: str = "cpu"  # cuda: widedeep and hand-written rows on one GPU (benchmarks/gpu.sh)
    seed: int = 0
    lr: float = LR
    embed_dim: int = EMBED_DIM
    hidden: tuple[int, ...] = HIDDEN
