#!/bin/bash
# Second device call: the compile option as shipped; tests, throughput, PPO paper profile.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || exit 1
cd /tmp
R=$OLDPWD
T0=$(date +%s)
el() { echo "=== $1 at $(( $(date +%s) - T0 )) s"; }
el throughput
timeout 270 python3 $R/benchmarks/throughput.py --device cuda --no-procgen --envs 1024,4096,16384,65536,262144 --seconds 2 --compile off,on --out $OUT/throughput_cuda.json 2>&1 | grep -v USDT | grep -v Warning | tail -25
el pytest
timeout 120 python3 -m pytest -q -p no:cacheprovider $R/tests/test_compile.py $R/tests/test_render.py -k "cuda or compile" 2>&1 | tail -4
el ppo
timeout 170 python3 -m coinrun_mg train --profile paper --device cuda --total-steps 2000000 --run-dir /tmp/paper --no-progress-bar 2>&1 | grep -v USDT | tail -6
el end
