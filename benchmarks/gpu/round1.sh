#!/bin/bash
# One device call: install, CUDA checks, step profile (eager and compiled), throughput, PPO.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, torch.cuda.get_device_name())"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || exit 1
cd /tmp  # import the installed package, not the checkout
R=$OLDPWD
T0=$(date +%s)
el() { echo "=== $1 at $(( $(date +%s) - T0 )) s"; }
el pytest
timeout 120 python3 -m pytest -q -p no:cacheprovider $R/tests/test_render.py -k cuda 2>&1 | tail -3
el cpu_vs_cuda
timeout 200 python3 $R/benchmarks/gpu/cpu_vs_cuda.py 2>&1 | tail -12
el eager
timeout 120 python3 $R/benchmarks/step_profile.py --device cuda --envs 4096,65536 --kernels --top 15 --out $OUT/eager.json 2>&1 | grep -v USDT > $OUT/eager.log; grep '^{' $OUT/eager.log
el compiled
timeout 200 python3 $R/benchmarks/step_profile.py --device cuda --envs 4096,65536 --core '{"compile": true}' 2>&1 | grep '^{'
el compiled_obs
timeout 200 python3 $R/benchmarks/step_profile.py --device cuda --envs 4096,65536 --core '{"compile": true}' --compile-obs 2>&1 | grep '^{'
el reduce_overhead
timeout 240 python3 $R/benchmarks/step_profile.py --device cuda --envs 4096,65536 --core '{"compile": true}' --compile-obs --compile-mode reduce-overhead 2>&1 | grep -v USDT > $OUT/ro.log; grep -E '^\{|Error|error' $OUT/ro.log | head
el throughput
timeout 150 python3 $R/benchmarks/throughput.py --device cuda --no-procgen --envs 1024,4096,16384,65536 --seconds 2 --out $OUT/throughput_cuda.json 2>&1 | grep -v USDT | tail -15
el ppo
timeout 150 python3 -m coinrun_mg train --profile paper --device cuda --total-steps 400000 --run-dir /tmp/paper --no-progress-bar 2>&1 | grep -v USDT | tail -4
el end
