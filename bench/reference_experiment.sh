#!/usr/bin/env bash
# The reference experiment (issue 13; docs/results.md): the default scenario, 100 trials per method
# under the deep schedule (issue 34; docs/performance.md, "Depth per hour": within an hour on 2 cores),
# the budget curve up to retraining's compute, the H1/H2 explanations, and the report pooling
# 3 fresh unlearning seeds per best configuration. Each step's wall time goes to $OUT/times.txt.
#   bash bench/reference_experiment.sh [STORE] [CURVE_SEEDS]
set -euo pipefail
STORE=${1:-raysweep-out}
CURVE_SEEDS=${2:-1}
RS=${RAYSWEEP:-.venv/bin/raysweep}
OUT=$STORE/reference-logs
mkdir -p "$OUT"
step() {  # name, command...
  local name=$1; shift
  local t0=$(date +%s)
  "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  echo "$name $(( $(date +%s) - t0 )) s  $*" | tee -a "$OUT/times.txt"
}
step prepare "$RS" prepare --store "$STORE" --json
step sweep   "$RS" sweep --store "$STORE" --methods all --schedule deep --trials 100 --name reference
step curve   "$RS" curve reference --store "$STORE" --budgets 0.02,0.05,0.1,0.25,0.5,1.0 --trials 8 --seeds "$CURVE_SEEDS"  # a search per budget + sanity rows
step explain "$RS" explain reference --store "$STORE"
step report  "$RS" report reference --store "$STORE" --seeds 3
