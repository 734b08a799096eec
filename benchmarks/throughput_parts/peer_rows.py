"""The peers' rows (pytorch-widedeep, deepctr-torch; code in benchmarks/_peers) and their venv."""

from __future__ import annotations

import hashlib
import importlib
import os
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import cardinalities
from .measure import StepClock, time_inference
from .spec import HERE, PEER_MODULES, ROW_MODULES, RowSpec, Settings

# -- the peers -----------------------------------------------------------------------------------


def run_peer(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """pytorch-widedeep, deepctr-torch or TorchRec through its own training loop
    (benchmarks/_peers)."""
    module = importlib.import_module(f"_peers.{ROW_MODULES[spec.system]}")
    row = module.Row(data, cardinalities(), asdict(s))
    clock.defer_profile = True
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda _module, _args: clock.step_starting()
    )
    try:
        row.train(clock.rows, clock.step_done)
    finally:
        hook.remove()
    rows = s.infer_rows or len(data["label"])
    return time_inference(row.predict, rows, s.eval_batch_size, s.infer_passes), row.num_params


# -- the peers' venv -----------------------------------------------------------------------------

REQUIREMENTS = HERE / "requirements-peers.txt"
TORCH_PIN = "torch==2.13.0"  # the CPU wheel; installed first and alone (see the requirements)


def peers_python(work: Path, log: Path) -> Path:
    """The peers' interpreter, installing their venv first if it is missing or out of date."""
    venv = work / "peers-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    with log.open("a") as out:

        def step(*cmd: str | Path) -> None:
            out.write(f"$ {shlex.join(map(str, cmd))}\n")
            out.flush()
            subprocess.run(list(map(str, cmd)), stdout=out, stderr=out, check=True)

        print(f"throughput: installing the peers' venv in {venv} (log: {log})", file=sys.stderr)
        step(sys.executable, "-m", "venv", venv)
        step(python, "-m", "pip", "install", "--quiet", TORCH_PIN)
        step(python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS)
        for module in PEER_MODULES.values():  # both import, shims included
            step(
                python,
                "-c",
                f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                f"import _peers.{module} as m; print(m.load())",
            )
    stamp.write_text(want)
    return python


# -- TorchRec's venv -----------------------------------------------------------------------------

TORCHREC_SETUP = HERE / "torchrec" / "setup.sh"


def torchrec_python() -> Path | str:
    """TorchRec's interpreter ($TORCHREC_VENV, default /work/.torchrec-venv, made by
    benchmarks/torchrec/setup.sh), or why there is none (the row's error)."""
    venv = Path(os.environ.get("TORCHREC_VENV", "/work/.torchrec-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        return f"no TorchRec venv at {venv}: make it with bash {TORCHREC_SETUP} {venv}"
    return python


# -- FuxiCTR's venv ------------------------------------------------------------------------------

FUXICTR_SETUP = HERE / "fuxictr" / "setup.sh"


def fuxictr_python() -> Path | str:
    """FuxiCTR's interpreter ($FUXICTR_VENV, default /work/.fuxictr-venv, made by
    benchmarks/fuxictr/setup.sh for the Frappe cross-check too), or why there is none."""
    venv = Path(os.environ.get("FUXICTR_VENV", "/work/.fuxictr-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        return f"no FuxiCTR venv at {venv}: make it with bash {FUXICTR_SETUP} {venv}"
    return python
