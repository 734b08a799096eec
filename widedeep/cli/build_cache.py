"""``python -m widedeep.cli.build_cache data=criteo ...``: build a dataset's cache entry."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from widedeep.cli.errors import report_user_error
from widedeep.data.pipeline import prepare

PROG = "python -m widedeep.cli.build_cache"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m widedeep.cli.build_cache data=criteo ...`` (widedeep-train overrides): build the
    dataset's cache entry, the stream's input, without loading it into memory (as
    ``widedeep-data prepare`` does after building): once, before a multi-node run. Returns the
    exit code: 0, or 2 after a one-line error (a damaged entry that cannot be rebuilt, a full
    cache folder, a bad override)."""
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config

    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = OmegaConf.to_container(compose_config(overrides).data, resolve=True)
        directory, manifest, hit = prepare({**cfg, "cache": True})  # type: ignore[dict-item]
    except Exception as err:
        return report_user_error(PROG, err)
    print(f"{directory}: {'reused' if hit else 'built'}, rows {manifest['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
