#!/usr/bin/env bash
# TorchRec's own virtual environment for the throughput benchmark's torchrec row (issue 18).
# Never the project's .venv and never committed: TorchRec is not a widedeep dependency.
# Usage: bash benchmarks/torchrec/setup.sh [venv-dir]   (default $TORCHREC_VENV or /work/.torchrec-venv)
# Then: TORCHREC_VENV=<venv-dir> python benchmarks/throughput.py --rows-only torchrec,...
set -euo pipefail
VENV="${1:-${TORCHREC_VENV:-/work/.torchrec-venv}}"
PYTHON="${PYTHON:-python3.11}"
# What installed here (2026-12-02, Python 3.11): pip resolved torchrec 1.9.2 with torch 2.14.1
# (the CUDA build: no CPU wheel of 2.14 in this machine's indexes; it runs on CPU) and, as a
# torchrec requirement, fbgemm-gpu 1.9.0, the CUDA build, whose fbgemm_gpu_py.so overwrote the
# CPU one and then failed to load ("libnvidia-ml.so.1: cannot open shared object file").
# So: remove fbgemm-gpu and reinstall fbgemm-gpu-cpu over it.
TORCHREC_VERSION=1.9.2
FBGEMM_VERSION=1.9.0

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet "torchrec==$TORCHREC_VERSION" "fbgemm-gpu-cpu==$FBGEMM_VERSION"
"$VENV/bin/pip" uninstall --quiet -y fbgemm-gpu || true
"$VENV/bin/pip" install --quiet --force-reinstall --no-deps "fbgemm-gpu-cpu==$FBGEMM_VERSION"
"$VENV/bin/python" -c "import torch, torchrec, fbgemm_gpu; print('torch', torch.__version__, '| torchrec', torchrec.__version__)"
