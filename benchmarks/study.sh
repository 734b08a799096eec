#!/usr/bin/env bash
# The tuned joint-vs-ensemble study (issue 15: primary comparisons and the size frontier), one at
# a time, resumable: every run and tuning trial lives in $WIDEDEEP_BENCH_STORE keyed by what
# trains it, so running this again reuses everything finished and resumes the rest.
#   bash benchmarks/study.sh [criteo|adult|movielens|synthetic|synthetic-p3|synthetic-p10|frappe|bars-frappe|size-synthetic|size-synthetic-p3|size-criteo|size-adult|size-movielens|phase|all]
# Budget and timings: benchmarks/README.md ("The tuned study").
# A run is reused only by a checkout whose training code (core, nn, optim, data, training)
# is the one that trained it: resume a study from a worktree at the commit its runs name.
set -euo pipefail
cd "$(dirname "$0")/.."
export WIDEDEEP_BENCH_STORE=${WIDEDEEP_BENCH_STORE:-$HOME/.cache/widedeep/bench-store}
# Every finished run, sealed (no checkpoints), and the tuning studies: committed, so that the
# next session resumes from them (benchmarks/README.md, "Resuming the study").
export WIDEDEEP_BENCH_ARCHIVE=${WIDEDEEP_BENCH_ARCHIVE:-$PWD/benchmarks/archive}
BENCH=${BENCH:-.venv/bin/widedeep-bench}
# 30 trials per trained model; an epoch cap early stopping reaches first (results.csv:
# stopped_early, epochs / best epoch). The primary comparisons run the main levels only
# (bench.grid=main); the size frontier is its own sweep.
COMMON=(bench.tune.trials=30 trainer.max_epochs=50)
# Opt-in (issue 20): the joint objectives' arms beside the others, e.g.
# WIDEDEEP_STUDY_OBJECTIVES=joint_tower_dropout,joint_aux,joint_warm,joint_per_tower_stop
# Their results go beside the plain study's: benchmarks/results/tuned/<name>-objectives. The
# plain kinds train there at the plain study's tuned settings (its tuned/ folder, which must
# exist: run the plain study first) and only the objectives are tuned, 30 trials each; the
# controls are left to the plain study (benchmarks/README.md, "Joint objectives").
SUFFIX=""
if [[ -n ${WIDEDEEP_STUDY_OBJECTIVES:-} ]]; then
  COMMON+=("bench.objectives=[$WIDEDEEP_STUDY_OBJECTIVES]")
  SUFFIX=-objectives
fi
PRIMARY=(bench.grid=main)
P3=(trainer.patience=3 trainer.max_epochs=200)

run() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "study $name: start $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
  # The suffix goes on the first part of the name: phase-objectives/50k_dense.
  local top=${name%%/*}
  local out=$top$SUFFIX${name#"$top"}
  local beside=()
  [[ -z $SUFFIX ]] || beside=("bench.tune.fixed=benchmarks/results/tuned/$name/tuned" "bench.controls=[]")
  # The common settings first: a dataset's own (frappe's 20 trials, the phase's fixed folder
  # and control) come later and win.
  "$BENCH" "${COMMON[@]}" "${beside[@]}" "$@" "bench.out=benchmarks/results/tuned/$out" \
    "hydra.run.dir=benchmarks/.work/study/$out"
  echo "study $name: done in $(( $(date +%s) - start )) s"
}

# The phase diagram (issue 15, part 3): training rows x exception regime on the synthetic log,
# 3 seeds, the arms wide, deep, joint, the ensembles and deep+deep. Every cell trains each kind
# at the settings tuned in one cell, synthetic-p3's (200k rows, the dense regime; 30 trials per
# kind, patience 3): per-cell tuning (10 trials per kind and cell) would have cost about two
# thirds of the diagram's 11 hours. Patience 3 and cap 200 as there.
PHASE_TUNED=benchmarks/results/tuned/synthetic-p3$SUFFIX/tuned
PHASE=(experiment=joint_vs_ensemble bench.grid=main bench.seeds=[0,1,2] bench.data_seeds=[0]
  "bench.controls=[ens_deep_deep]" bench.tune.trials=0 "bench.tune.fixed=$PHASE_TUNED" "${P3[@]}")
declare -A PHASE_ROWS=([50k]=50000 [200k]=200000 [1m]=1000000)
declare -A REGIMES=(
  [dense]="data.generator.n_exceptions=400 data.generator.exception_share=0.10"
  [rare]="data.generator.n_exceptions=5000 data.generator.exception_share=0.02"
  [tail]="data.generator.n_exceptions=5000 data.generator.exception_share=0.05 data.generator.exception_zipf=1.1"
)

phase() {
  local rows regime
  [[ -f $PHASE_TUNED/wide_deep.yaml ]] || run synthetic-p3 experiment=joint_vs_ensemble "${P3[@]}" "${PRIMARY[@]}"
  for rows in 50k 200k 1m; do
    for regime in dense rare tail; do
      # shellcheck disable=SC2086  # the regime's overrides are words
      run "phase/${rows}_$regime" "${PHASE[@]}" "data.generator.n_rows=${PHASE_ROWS[$rows]}" \
        ${REGIMES[$regime]}
    done
  done
  .venv/bin/python benchmarks/phase.py "benchmarks/results/tuned/phase$SUFFIX"
}

case "${1:-all}" in
  criteo | all) run criteo experiment=jve_criteo bench.k_members=4 "${PRIMARY[@]}" ;;&
  adult | all) run adult experiment=jve_adult "${PRIMARY[@]}" ;;&
  movielens | all) run movielens experiment=jve_movielens "${PRIMARY[@]}" ;;&
  synthetic | all) run synthetic experiment=joint_vs_ensemble "${PRIMARY[@]}" ;;&
  # Sensitivity: the primary synthetic comparison with patience 3, not 1 (with patience 1 the
  # deep tower alone stops on its first flat epoch in 6 of 15 cells), and the size frontier
  # likewise with an epoch cap of 200 (at 50, the wide tower alone at L1 >= 0.1 was still
  # improving): RESULTS.md, synthetic and claim 2. The two share their tuning studies.
  synthetic-p3 | all) run synthetic-p3 experiment=joint_vs_ensemble "${P3[@]}" "${PRIMARY[@]}" ;;&
  # Patience 1 and 3 disagree on synthetic (RESULTS.md): whichever arm stops on an early plateau
  # loses. Patience 10 asks whether the verdict survives training every arm to convergence.
  synthetic-p10 | all) run synthetic-p10 experiment=joint_vs_ensemble trainer.patience=10 \
    trainer.max_epochs=300 "${PRIMARY[@]}" ;;&
  frappe | all) run frappe experiment=jve_frappe bench.tune.trials=20 "${PRIMARY[@]}" ;;&
  bars-frappe | all) run bars-frappe experiment=jve_bars_frappe bench.tune.trials=0 trainer.max_epochs=100 ;;&
  size-synthetic | all) run size-synthetic experiment=size_synthetic ;;&
  size-synthetic-p3 | all) run size-synthetic-p3 experiment=size_synthetic "${P3[@]}" ;;&
  # The size frontier on the real datasets: every kind at its primary comparison's tuned
  # settings (and each joint objective at its own, with the objectives), no tuning of its own.
  size-criteo | size-adult | size-movielens | all)
    for d in criteo adult movielens; do
      [[ ${1:-all} == "size-$d" || ${1:-all} == all ]] || continue
      run "size-$d" "experiment=size_$d" bench.tune.trials=0 \
        "bench.tune.fixed=benchmarks/results/tuned/$d$SUFFIX/tuned"
    done ;;&
  phase | all) phase ;;&
  criteo | adult | movielens | synthetic | synthetic-p3 | synthetic-p10 | frappe | bars-frappe | size-synthetic | size-synthetic-p3 | size-criteo | size-adult | size-movielens | phase | all) ;;
  *) echo "study: unknown dataset $1" >&2; exit 2 ;;
esac
