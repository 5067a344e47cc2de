#!/bin/bash
# The GPU checks of one device session, in one command with a hard time limit per phase:
# the CUDA tests, CPU-vs-CUDA agreement, env throughput (CoinRun and Maze), PPO training
# speed (quick profile) and the paper profile at fractions 0 and 0.02 (512 envs x 256
# steps, run side by side with whatever is left of BUDGET_SECONDS, resumable from the
# returned tarballs). Run from the repository root on a CUDA machine whose python3 has torch;
# gymnasium may come as wheels in .whl/ (benchmarks/README.md). Logs go to $OUT (or ./out).
#
#     OUT=/tmp/gpu bash benchmarks/gpu_session.sh [BUDGET_SECONDS]
set -u
OUT=${OUT:-out}
BUDGET_SECONDS=${1:-540}
start=$(date +%s)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log="$OUT/gpu_session.log"
phase() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

phase setup
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    >>"$log" 2>&1 && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >>"$log" 2>&1
{ nvidia-smi -L; python3 -c "import torch, gymnasium, coinrun_mg; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); \
print('gymnasium', gymnasium.__version__); print('git', '$(git rev-parse --short HEAD 2>/dev/null)')"; \
  nproc; } 2>&1 | tee -a "$log" || exit 1
python3 -c "import coinrun_mg" || exit 1

phase "CUDA tests"
timeout -k 10 100 python3 -m pytest -q -n 8 --timeout 90 -p no:cacheprovider \
  tests/test_compile.py tests/test_render.py tests/test_env_api.py tests/test_maze.py \
  >>"$log" 2>&1
echo "pytest exit $?" | tee -a "$log"
tail -n 5 "$log"

phase "CPU vs CUDA"
timeout -k 10 60 python3 benchmarks/cpu_vs_cuda.py --envs 1024 --steps 200 2>&1 | tee -a "$log"

phase "env throughput"
timeout -k 10 60 python3 benchmarks/throughput.py --device cuda --no-procgen --compile off \
  --envs 16384,65536,262144 --seconds 2 --out "$OUT/throughput_eager.json" 2>&1 | tee -a "$log"
timeout -k 10 80 python3 benchmarks/throughput.py --device cuda --no-procgen --compile on \
  --envs 65536,262144 --obs symbolic --seconds 3 --out "$OUT/throughput_compiled.json" \
  2>&1 | tee -a "$log"
timeout -k 10 40 python3 benchmarks/throughput.py --game maze --device cuda --no-procgen \
  --compile off --envs 16384,65536 --seconds 2 --out "$OUT/throughput_maze.json" \
  2>&1 | tee -a "$log"

phase "PPO quick profile on CUDA"
timeout -s INT -k 20 60 coinrun-mg train --profile quick --device cuda --run-dir /tmp/runs/quick \
  --total-steps 10000000 --eval-every 0 --no-progress 2>&1 | tail -n 8 | tee -a "$log"

# The paper runs get the rest of the budget, less 50 s to finish an iteration and pack up.
PAPER_SECONDS=$((BUDGET_SECONDS - ($(date +%s) - start) - 50))
phase "paper profile, 512 envs x 256 steps, fractions 0 and 0.02 side by side"
for f in 0 0.02; do
  timeout -s INT -k 40 "$PAPER_SECONDS" coinrun-mg train --profile paper --device cuda \
    --num-envs 512 --num-steps 256 --total-steps 80000000 --rand-fraction "$f" --seed 0 \
    --checkpoint-every 524288 --eval-every 0 --no-progress --run-dir "/tmp/runs/paper_f$f" \
    >"$OUT/paper_f$f.log" 2>&1 &
done
wait
for f in 0 0.02; do
  tail -n 4 "$OUT/paper_f$f.log" | tee -a "$log"
  tar -C /tmp/runs -czf "$OUT/paper_f$f.tgz" "paper_f$f"
done
phase done
