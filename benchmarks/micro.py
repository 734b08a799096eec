"""Micro-measurements behind figures in THROUGHPUT.md (seconds each, not part of the tests).

python benchmarks/micro.py            # all three
python benchmarks/micro.py drift      # the machine's GEMM rate, once a second
python benchmarks/micro.py lookup     # sparse lookup + backward + coalesce: torch's vs ours
python benchmarks/micro.py relu       # the benchmark's MLP at batch 8192: ReLU in place or not
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from widedeep import keep_freed_memory
from widedeep.nn.deep import mlp
from widedeep.nn.embedding import FieldEmbedding

torch.set_num_threads(2)
keep_freed_memory()  # as widedeep's CLIs and the benchmark's widedeep rows run


def ms_per_call(fn: Callable[[], object], reps: int = 50) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e3


def alternating_medians(
    ways: dict[str, Callable[[], object]], rounds: int, reps: int = 10
) -> dict[str, float]:
    """Median ms per call of each way over ``rounds`` rounds that take turns, so that this
    machine's drift falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            times[name].append(ms_per_call(way, reps))
    return {name: float(np.median(t)) for name, t in times.items()}


def drift(seconds: int = 20) -> None:
    a, b = torch.randn(4096, 400), torch.randn(400, 400)
    rates = []
    for _ in range(seconds):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            a @ b
            reps += 1
        rates.append(2 * 4096 * 400 * 400 * reps / (time.perf_counter() - start) / 1e9)
    print(
        f"drift: fp32 GEMM 4096x400x400, {seconds} one-second samples: "
        f"min {min(rates):.0f}, median {np.median(rates):.0f}, max {max(rates):.0f} GFLOP/s"
    )


def lookup(rounds: int = 8) -> None:
    # Criteo's shape: 26 fields, ~1.08M rows in all, dimension 16, no missing ids; uniform ids
    # (more distinct rows per batch than the benchmark's Zipf ids: more for `unique` to sort).
    table = FieldEmbedding([41_500] * 26, dim=16, sparse_min_rows=0)
    ids = torch.randint(1, 41_500, (4096, 26))
    rows = table.rows(ids)
    dense = torch.randn(4096, 13)

    def step(embed: Callable[[], torch.Tensor]) -> None:
        table.weight.grad = None
        torch.cat([embed().flatten(1), dense], 1).sum().backward()
        table.weight.grad.coalesce()  # the first thing every sparse optimizer does with it

    ms = alternating_medians(
        {
            "torch": lambda: step(
                lambda: F.embedding(rows, table.weight, padding_idx=0, sparse=True)
            ),
            "ours": lambda: step(lambda: table(ids)),
        },
        rounds,
    )
    print(
        "lookup: 4096 x 26 x 16 lookup + sparse backward + coalesce, median of "
        f"{rounds} alternating rounds: torch padding_idx {ms['torch']:.2f} ms, "
        f"FieldEmbedding (SparseLookup) {ms['ours']:.2f} ms"
    )


def relu(rounds: int = 8) -> None:
    net = mlp(26 * 16 + 13, (400, 400, 400)).eval()
    x = torch.randn(8192, 26 * 16 + 13)
    relus = [m for m in net if isinstance(m, torch.nn.ReLU)]

    def forward(inplace: bool) -> Callable[[], object]:
        def call() -> object:
            for m in relus:
                m.inplace = inplace
            return net(x)

        return call

    with torch.inference_mode():
        ms = alternating_medians({"out": forward(False), "in": forward(True)}, rounds)
    out, inplace = ms["out"], ms["in"]
    print(
        f"relu: MLP 429-400-400-400-1 at batch 8192, median of {rounds} alternating rounds: "
        f"{out:.1f} ms out of place, {inplace:.1f} ms in place ({out / inplace - 1:+.1%})"
    )


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["drift", "lookup", "relu"]
    for name in chosen:
        {"drift": drift, "lookup": lookup, "relu": relu}[name]()
