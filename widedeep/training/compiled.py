"""``trainer.compile``: torch.compile of the towers' MLPs, in place, with an eager fallback.

What is compiled: every MLP (``nn.Sequential``) of a `DeepTower`, the matmuls where a step's
time goes. Not the embedding lookups: their sparse backward (`SparseLookup`: a sort and a
scatter of data-dependent size) breaks the graph, and the wide tower is lookups and sums only.

In place, not a wrapper: the MLP's ``forward`` becomes a `CompiledForward`, an instance
attribute, so the module tree and its ``state_dict`` keys stay the same (no ``_orig_mod.``
prefix). A compiled run's checkpoint loads into an eager model and back, and resuming can
switch compile on or off.

No recompiles in steady state: the batch dimension is marked dynamic before the first call
(`torch._dynamo.maybe_mark_dynamic`), so the last partial batch and the evaluation batch size
reuse the graphs compiled for the first batch. One graph is compiled per mode (training with
gradients; evaluation), and that compile time is counted apart (`CompileStats`). Inductor's
on-disk caches (FX graph and autograd caches, under ``TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_$USER``) make a second run's first step cheap.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger("widedeep")

# torch.compile's backend. WIDEDEEP_COMPILE_BACKEND=aot_eager (the same graphs without C++
# code generation) is for tests and debugging: inductor takes tens of seconds to compile.
BACKEND: Any = os.environ.get("WIDEDEEP_COMPILE_BACKEND", "inductor")


@dataclass
class CompileStats:
    """What compiling cost and did: shared by every compiled MLP of one model."""

    compiled_modules: int = 0
    compiles: int = 0  # calls during which dynamo compiled a new graph
    compile_time_s: float = 0.0  # wall time of those calls (the compile and that one call)
    fallback: str | None = None  # why the model runs eager, if it fell back

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _reason(err: BaseException) -> str:
    """The first line of the root cause (dynamo wraps a backend's error in its own)."""
    err = getattr(err, "inner_exception", None) or err.__cause__ or err
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


class CompiledForward:
    """An MLP's forward, compiled on first use; eager from the first failure on."""

    def __init__(self, eager: Any, stats: CompileStats, backend: Any) -> None:
        self.eager = eager
        self.stats = stats
        self.compiled = torch.compile(eager, backend=backend, dynamic=None)

    def __call__(self, x: Tensor) -> Tensor:
        if self.stats.fallback is not None:
            return self.eager(x)
        if x.shape[0] > 1:  # sizes 0 and 1 are specialized by dynamo anyway
            torch._dynamo.maybe_mark_dynamic(x, 0)
        before, start = _graphs_compiled(), time.perf_counter()
        try:
            out = self.compiled(x)
        except Exception as err:  # a compile failure: the model still trains, eager
            self.stats.fallback = _reason(err)
            log.warning("trainer.compile: falling back to eager: %s", self.stats.fallback)
            return self.eager(x)
        if _graphs_compiled() > before:
            self.stats.compiles += 1
            self.stats.compile_time_s += time.perf_counter() - start
        return out


def compile_model(model: nn.Module, backend: Any = None) -> CompileStats:
    """Compile ``model``'s deep-tower MLPs in place (see the module's docstring); idempotent.

    Returns the stats its compiled parts fill in. Where torch cannot compile at all here, the
    model stays eager and ``fallback`` says why (also logged as one warning line)."""
    from widedeep.nn.deep import DeepTower

    existing = getattr(model, "_widedeep_compile_stats", None)
    if existing is not None:
        return existing
    stats = CompileStats()
    model._widedeep_compile_stats = stats  # type: ignore[assignment]
    if not torch._dynamo.is_dynamo_supported():
        stats.fallback = "torch.compile is not supported on this Python/platform"
        log.warning("trainer.compile: falling back to eager: %s", stats.fallback)
        return stats
    try:
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        functorch_config.enable_autograd_cache = True
    except (ImportError, AttributeError):  # an older torch: its defaults
        pass
    for module in model.modules():
        if isinstance(module, DeepTower) and not isinstance(module.mlp.forward, CompiledForward):
            module.mlp.forward = CompiledForward(  # type: ignore[method-assign]
                module.mlp.forward, stats, backend or BACKEND
            )
            stats.compiled_modules += 1
    return stats


def compile_stats(model: nn.Module) -> CompileStats | None:
    """The stats of a model `compile_model` compiled, else None."""
    return getattr(model, "_widedeep_compile_stats", None)
