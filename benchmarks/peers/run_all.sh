#!/usr/bin/env bash
# Train every peer run that has not finished yet, one after another (each needs the 2 cores to
# itself for its whole budget, so they never run side by side). Usage, from the checkout:
#   nohup bash benchmarks/peers/run_all.sh [PEERS_ROOT [RUN...]] > ../peers/runs/run_all.log 2>&1 &
# PEERS_ROOT (default ../peers) holds the environments (setup.sh), the exported data
# (export.py) and the runs; RUN names the runs to make (e.g. cellpose-dsb2018; default: all
# four). Each finished run is scored at once into benchmarks/results/peers_<dataset>.json
# (peers.py --only TOOL, with the checkout's .venv), so that its row can be committed even if
# the machine, and with it the run folder, is not kept. TRAIN_CONDITIONS (recorded with the
# rows) says what else shared the machine; PEERS_TAG suffixes the results' name (tests).
# A run counts as finished when its run.json records predictions; a run folder left by an
# interrupted run is moved aside (never deleted) and started again.
# The budgets are the shipped SAC models' whole training wall times, joint stage plus the
# generator trained alone (see README.md): sac-lite-monuseg 110 min, sac-lite-dsb2018 102 min.
set -euo pipefail
root="${1:-../peers}"
shift || true
wanted=("$@")
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
specs=("stardist monuseg 110" "cellpose monuseg 110" "stardist dsb2018 102" "cellpose dsb2018 102")
for name in "${wanted[@]}"; do  # a misspelt run name is an error, not a silent no-op
  known=no
  for spec in "${specs[@]}"; do
    read -r tool dataset _ <<<"$spec"
    [ "$name" = "$tool-$dataset" ] && known=yes
  done
  if [ $known = no ]; then
    echo "run_all.sh: unknown run '$name'; the runs are stardist-monuseg, cellpose-monuseg," \
         "stardist-dsb2018 and cellpose-dsb2018" >&2
    exit 2
  fi
done
mkdir -p "$root/runs"

finished() {  # run folder
  [ -f "$1/run.json" ] && "$root/stardist/bin/python" - "$1/run.json" <<'EOF'
import json, sys
record = json.load(open(sys.argv[1]))
sys.exit(0 if record.get("predictions") and not record.get("error") else 1)
EOF
}

for spec in "${specs[@]}"; do
  read -r tool dataset minutes <<<"$spec"
  run="$root/runs/$tool-$dataset"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $tool-$dataset " ]]; then
    continue
  fi
  if finished "$run"; then
    echo "$tool-$dataset: finished already ($run/run.json)"
    continue
  fi
  if [ -e "$run" ]; then
    aside="$run.interrupted-$(date +%Y%m%d-%H%M%S)"
    mv "$run" "$aside"
    echo "$tool-$dataset: an unfinished run was moved to $aside"
  fi
  extra=()
  if [ "$tool" = stardist ] && [ "$dataset" = dsb2018 ]; then
    extra=(--grey)  # StarDist's fluorescence example: one grey channel
  fi
  echo "$tool-$dataset: training for $minutes min from $(date -u +%H:%M) UTC"
  "$root/$tool/bin/python" "$here/${tool}_run.py" --data "$root/data/$dataset" --run "$run" \
    --minutes "$minutes" "${extra[@]}" > "$root/runs/$tool-$dataset.log" 2>&1 \
    || echo "$tool-$dataset: failed (exit $?); see $root/runs/$tool-$dataset.log"
  echo "$tool-$dataset: done at $(date -u +%H:%M) UTC"
  if [ -x "$checkout/.venv/bin/python" ]; then
    "$checkout/.venv/bin/python" "$checkout/benchmarks/peers.py" --dataset "$dataset" \
      --runs "$root/runs" --only "$tool" --tag "${PEERS_TAG:-}" \
      --train-conditions "${TRAIN_CONDITIONS:-run_all.sh, one training at a time}" \
      > "$root/runs/$tool-$dataset.score.log" 2>&1 \
      && echo "$tool-$dataset: scored into benchmarks/results/peers_$dataset${PEERS_TAG:-}.json" \
      || echo "$tool-$dataset: scoring failed; see $root/runs/$tool-$dataset.score.log"
  fi
done
