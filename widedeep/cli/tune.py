"""widedeep-tune: search one arm's hyperparameters on the validation split (docs/tuning.md).

widedeep-tune model=wide optim=paper tune.trials=30      # searches tune/paper.yaml's wide space
widedeep-tune model=deep tune.storage=postgresql://user@host/widedeep tune.shared=true

The same command again resumes the study (outputs/tune/<data>/<kind>/tune.db). The tuning is
`widedeep.experiment.tuning_runs.tune_arm`; this is its thin command line.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from widedeep.cli.errors import report_user_error
from widedeep.core.allocator import keep_freed_memory
from widedeep.experiment.tuning_runs import train_overrides, tune_arm


def _hydra_entry(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        keep_freed_memory()  # before the first trial's first batch; idempotent
        base = train_overrides(HydraConfig.get().overrides.task)
        result, path, command = tune_arm(cfg, base)
        best = result.best
        print(
            f"widedeep-tune: best val {cfg.trainer.monitor} {best.value:.4f} (trial {best.number}"
            f"; {result.complete} complete, {result.pruned} pruned, {result.new} new)"
        )
        print(f"widedeep-tune: setting in {path}; retrain with:\n{command}")
    except Exception as err:
        sys.exit(report_user_error("widedeep-tune", err))


def main() -> None:
    from widedeep.cli.config import run_app

    run_app("widedeep-tune", "tune_train", _hydra_entry)


if __name__ == "__main__":
    main()
