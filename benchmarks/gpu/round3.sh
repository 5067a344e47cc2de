#!/bin/bash
# Third device call: static-shape compile as shipped; throughput, breakdown, CUDA tests, PPO.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || exit 1
cd /tmp
R=$OLDPWD
T0=$(date +%s)
el() { echo "=== $1 at $(( $(date +%s) - T0 )) s"; }
el throughput
timeout 200 python3 $R/benchmarks/throughput.py --device cuda --no-procgen --envs 16384,65536,262144 --obs symbolic --seconds 3 --compile on --out $OUT/throughput_sym.json 2>&1 | grep '^|'
timeout 80 python3 $R/benchmarks/throughput.py --device cuda --no-procgen --envs 65536 --obs pixels --seconds 3 --compile on --out $OUT/throughput_pix.json 2>&1 | grep '^| native'
el profile
timeout 50 python3 $R/benchmarks/step_profile.py --device cuda --envs 65536 --obs symbolic --compile on --out $OUT/profile.json 2>&1 | grep '^{'
el pytest
timeout 120 python3 -m pytest -q -p no:cacheprovider $R/tests/test_compile.py $R/tests/test_render.py -k "cuda or compile" 2>&1 | tail -3
el ppo
timeout 85 python3 -m coinrun_mg train --profile paper --device cuda --total-steps 2000000 --eval-every 0 --run-dir /tmp/paper --no-progress-bar 2>&1 | grep -v USDT | tail -5
cp /tmp/paper/events.out.tfevents.* $OUT/ 2>/dev/null
el end
