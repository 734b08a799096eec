"""widedeep-train: the thin Hydra command line around `widedeep.training.run.train`.

widedeep-train data=synthetic model=wide_deep optim=adam seed=1
widedeep-train -m model=wide,deep,wide_deep seed=0,1,2

Exit codes: 0 done; 2 a user error (one line); 143 (128 + SIGTERM) stopped by SIGTERM, e.g. a
scheduler's preemption: checkpoints/last.ckpt holds the state to resume from (docs/faults.md).
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from widedeep.cli.config import hydra_multirun, run_app
from widedeep.cli.errors import report_user_error
from widedeep.core.allocator import keep_freed_memory
from widedeep.training.run import Preempted, train, validate

log = logging.getLogger("widedeep")


def _hydra_entry(cfg: DictConfig) -> float:
    try:
        keep_freed_memory()  # before the first batch; idempotent (a multirun calls it per job)
        # Only the command line knows whether it runs a job of a local sweep (DDP refuses it).
        validate(cfg, sweep=hydra_multirun())
        # What a Hydra sweeper (hydra/sweeper=optuna) maximises: the validation AUC, never test.
        return float(train(cfg)["val"]["auc"])
    except Preempted as stop:  # not a success (0) nor a user error (2): the scheduler's signal
        log.warning("widedeep-train: %s", stop)
        sys.exit(Preempted.EXIT_CODE)
    except Exception as err:
        sys.exit(report_user_error("widedeep-train", err))


def main() -> None:
    run_app("widedeep-train", "train", _hydra_entry)


if __name__ == "__main__":
    main()
