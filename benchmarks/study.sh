#!/usr/bin/env bash
# The tuned joint-vs-ensemble study (issue 15: primary comparisons and the size frontier), one at
# a time, resumable: every run and tuning trial lives in $WIDEDEEP_BENCH_STORE keyed by what
# trains it, so running this again reuses everything finished and resumes the rest.
#   bash benchmarks/study.sh [criteo|adult|movielens|synthetic|frappe|size-synthetic|all]
# Budget and timings: benchmarks/README.md ("The tuned study").
set -euo pipefail
cd "$(dirname "$0")/.."
export WIDEDEEP_BENCH_STORE=${WIDEDEEP_BENCH_STORE:-$HOME/.cache/widedeep/bench-store}
BENCH=${BENCH:-.venv/bin/widedeep-bench}
# 30 trials per trained model; an epoch cap early stopping reaches first (results.csv:
# stopped_early, epochs / best epoch). The primary comparisons run the main levels only
# (bench.grid=main); the size frontier is its own sweep.
COMMON=(bench.tune.trials=30 trainer.max_epochs=50)
PRIMARY=(bench.grid=main)

run() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "study $name: start $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
  "$BENCH" "$@" "${COMMON[@]}" "bench.out=benchmarks/results/tuned/$name" \
    "hydra.run.dir=benchmarks/.work/study/$name"
  echo "study $name: done in $(( $(date +%s) - start )) s"
}

case "${1:-all}" in
  criteo | all) run criteo experiment=jve_criteo bench.k_members=4 "${PRIMARY[@]}" ;;&
  adult | all) run adult experiment=jve_adult "${PRIMARY[@]}" ;;&
  movielens | all) run movielens experiment=jve_movielens "${PRIMARY[@]}" ;;&
  synthetic | all) run synthetic experiment=joint_vs_ensemble "${PRIMARY[@]}" ;;&
  frappe | all) run frappe experiment=jve_frappe bench.tune.trials=20 "${PRIMARY[@]}" ;;&
  size-synthetic | all) run size-synthetic experiment=size_synthetic ;;&
  criteo | adult | movielens | synthetic | frappe | size-synthetic | all) ;;
  *) echo "study: unknown dataset $1" >&2; exit 2 ;;
esac
