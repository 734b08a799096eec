#!/usr/bin/env bash
# The GPU path measured on one GPU (issue 18, part 5), in under 10 minutes on a current GPU:
#   1. benchmarks/throughput.py --device cuda: the widedeep and hand-written rows (the peers
#      and TorchRec run on the CPU only in that benchmark), 1M rows, one epoch each;
#   2. the synthetic study's largest cell (the phase diagram's 1M rows, "tail" regime:
#      benchmarks/study.sh phase) on the GPU: every arm of experiment=joint_vs_ensemble, one
#      seed, untuned defaults (bench.tune.trials=0; the CPU study tunes 10 trials per kind).
# Results: $OUT (default benchmarks/results/gpu): throughput-<gpu>.md/.json, phase-1m-tail/
# (results.csv, the report) and gpu.txt (nvidia-smi, torch, the commands, the times).
# What it is expected to show: docs/speed.md, "On a GPU".
#   bash benchmarks/gpu.sh                         # on a machine with a CUDA GPU
#   DEVICE=cpu ROWS=20000 CELL_ROWS=3000 EPOCHS=1 bash benchmarks/gpu.sh   # plumbing check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BENCH=${BENCH:-.venv/bin/widedeep-bench}
DEVICE=${DEVICE:-cuda}
ROWS=${ROWS:-1000000}
CELL_ROWS=${CELL_ROWS:-1000000}
EPOCHS=${EPOCHS:-10}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
LOG="$OUT/gpu.txt"
ACCELERATOR=gpu
[ "$DEVICE" = cpu ] && ACCELERATOR=cpu

{
  echo "benchmarks/gpu.sh: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
  "$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available())"
  if [ "$DEVICE" != cpu ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
} | tee "$LOG"
if [ "$DEVICE" != cpu ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu.sh: error: no CUDA device visible to torch (DEVICE=cpu checks the plumbing)" >&2
  exit 2
fi

start=$(date +%s)
# 1. Throughput. --threads 2: the host's share of the work (the loader, Lightning's loop).
"$PY" benchmarks/throughput.py --device "$DEVICE" --rows "$ROWS" --threads 2 \
  --rows-only handwritten-adam,handwritten-sparse,handwritten-sparse-compile,widedeep-adam-fused,widedeep-sparse,widedeep-sparse-compile,widedeep-sparse-bf16 \
  --out "$OUT" --work benchmarks/.work/gpu | tee -a "$LOG"
echo "throughput: $(( $(date +%s) - start )) s" | tee -a "$LOG"

# 2. The largest cell of the synthetic phase diagram, in a store of its own (not the CPU
# study's: the runs differ in trainer.accelerator, so they would not be reused anyway).
start=$(date +%s)
env -u WIDEDEEP_BENCH_ARCHIVE WIDEDEEP_BENCH_STORE="$OUT/store" "$BENCH" experiment=joint_vs_ensemble \
  bench.grid=main "bench.seeds=[0]" "bench.data_seeds=[0]" "bench.controls=[ens_deep_deep]" \
  bench.tune.trials=0 "data.generator.n_rows=$CELL_ROWS" data.generator.n_exceptions=5000 \
  data.generator.exception_share=0.05 data.generator.exception_zipf=1.1 \
  "trainer.accelerator=$ACCELERATOR" trainer.devices=1 "trainer.max_epochs=$EPOCHS" \
  "bench.out=$OUT/phase-1m-tail" "hydra.run.dir=benchmarks/.work/gpu/phase-1m-tail" \
  | tee -a "$LOG"
echo "phase 1m tail cell: $(( $(date +%s) - start )) s" | tee -a "$LOG"
