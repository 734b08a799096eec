"""widedeep-bench: joint training versus an ensemble of separately trained halves.

    widedeep-bench                                   # synthetic, experiment=joint_vs_ensemble
    widedeep-bench experiment=jve_frappe bench.seeds=[0,1,2]

The harness itself is `widedeep.experiment.harness.bench`; this is its thin command line.
"""

from __future__ import annotations

import sys
from typing import Any

from widedeep.cli.errors import report_user_error
from widedeep.core.allocator import keep_freed_memory
from widedeep.experiment.harness import bench


def _hydra_entry(cfg: Any) -> None:
    try:
        keep_freed_memory()  # before the runs' first batch; idempotent
        print(f"widedeep-bench: results in {bench(cfg)}")
    except Exception as err:
        sys.exit(report_user_error("widedeep-bench", err))


def main() -> None:
    from widedeep.cli.config import run_app

    run_app("widedeep-bench", "bench", _hydra_entry)


if __name__ == "__main__":
    main()
