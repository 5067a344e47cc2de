#!/bin/bash
# The sweeps published in docs/results.md, in the order they run on a 2-core CPU: the
# CoinRun queue (fraction curve, budget curve, level replay; two runs at a time) and the
# Maze queue (fraction curve, level replay; two runs at a time, so that it can take the
# whole machine when the CoinRun queue is done or held back), side by side. Every sweep
# goes on from the runs already in its folder, so the same command picks up where it
# stopped. Run from anywhere, with coinrun-mg installed (the procgen extra too); the
# folders are named from the repository root, as in README.md beside this script:
#
#     bash docs/data/sweeps/run.sh coinrun    # or: maze
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
here=docs/data/sweeps
coinrun_mg="coinrun-mg sweep --torch-threads 1"

# Give a level-replay sweep the DR runs another sweep already finished with the same
# settings (result.json and episode CSVs), so that they are read rather than retrained.
reuse_runs() {
  local from=$here/$1 to=$here/$2 run
  shift 2
  for run in "$@"; do
    if [ -f "$from/runs/$run/result.json" ] && [ ! -e "$to/runs/$run/result.json" ]; then
      mkdir -p "$to/runs/$run"
      cp "$from/runs/$run"/*.json "$from/runs/$run"/*.csv "$to/runs/$run/"
    fi
  done
}

coinrun() {
  $coinrun_mg --fractions 0,0.005,0.01,0.02,0.05,0.1,0.2 --seeds 0,1,2 --workers 2 \
    --eval-backends native,procgen --out $here/fraction10
  $coinrun_mg --fractions 0,0.02,0.2 --seeds 0,1,2 --workers 2 --total-steps 20000000 \
    --eval-at 2.5M,5M,7.5M,10M,15M,20M --out $here/budget
  reuse_runs fraction10 plr f0_s{0,1,2} f0.01_s{0,1,2} f0.02_s{0,1,2}
  $coinrun_mg --fractions 0,0.001,0.01,0.02 --seeds 0,1,2 --workers 2 --curricula dr,plr \
    --set plr_buffer_size=1000 --eval-backends native,procgen --out $here/plr
}

maze() {
  $coinrun_mg --env maze --fractions 0,0.01,0.02,0.05,0.1,0.2 --seeds 0,1,2 --workers 2 \
    --out $here/maze5m
  reuse_runs maze5m maze_plr f0_s{0,1,2} f0.01_s{0,1,2} f0.02_s{0,1,2}
  $coinrun_mg --env maze --fractions 0,0.001,0.01,0.02 --seeds 0,1,2 --workers 2 \
    --curricula dr,plr --set plr_buffer_size=1000 --out $here/maze_plr
}

case "${1:-}" in
  coinrun | maze) "$1" ;;
  *)
    echo "usage: bash docs/data/sweeps/run.sh coinrun|maze (got '${1:-}')" >&2
    exit 2
    ;;
esac
