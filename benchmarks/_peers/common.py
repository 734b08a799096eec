"""What both peer rows share: column names and the hook that times their optimizer steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def field_names(num_dense: int, num_categorical: int) -> tuple[list[str], list[str]]:
    """Criteo's column names: I1..I13 (dense), C1..C26 (categorical)."""
    return [f"I{i + 1}" for i in range(num_dense)], [f"C{i + 1}" for i in range(num_categorical)]


def time_optimizer_steps(optimizer: torch.optim.Optimizer, on_step: Callable[[], None]) -> None:
    """Call ``on_step`` after every ``optimizer.step()``. A torch hook, so the peers' own
    training loops run unchanged and every system is timed at the same point of a step."""

    def hook(_opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        on_step()

    optimizer.register_step_post_hook(hook)
