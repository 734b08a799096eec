#!/usr/bin/env bash
# Make FuxiCTR's own virtual environment for the Frappe cross-check (issue 15, part 4).
# It is never the project's .venv and never committed: FuxiCTR is not a widedeep dependency.
# Usage: bash benchmarks/fuxictr/setup.sh [venv-dir]   (default $FUXICTR_VENV or /work/.fuxictr-venv)
set -euo pipefail
VENV="${1:-${FUXICTR_VENV:-/work/.fuxictr-venv}}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION=2.13.0
FUXICTR_VERSION=2.3.10
# fuxictr 2.3.10 calls pl.scan_csv(dtypes=...), an argument polars 2.0 removed.
POLARS_VERSION=1.44.2

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# fuxictr declares no torch requirement, so torch is pinned here. On this machine pip's
# find-links hold the CPU wheel 2.13.0+cpu; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu so that no CUDA build is pulled.
"$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION" "fuxictr==$FUXICTR_VERSION" \
  "polars==$POLARS_VERSION"
if "$VENV/bin/pip" list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "setup.sh: error: a CUDA package was installed into $VENV" >&2
  exit 1
fi
"$VENV/bin/python" -c "import torch, fuxictr; print('torch', torch.__version__, '| fuxictr', fuxictr.__version__)"
