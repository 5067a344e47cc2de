#!/usr/bin/env python
"""Do CPU and CUDA steps agree?  The same envs, seeds and actions on three cores.

Steps ``--envs`` environments for ``--steps`` random-action steps on the CPU (eager), on CUDA
eager (``compile=False``) and on CUDA compiled (``compile=True``), in both observation modes,
and reports for each CUDA core the first step at which an observation, reward or agent
position differs from the CPU's (and how many envs differ there, and by how much).  Needs
CUDA.

    python benchmarks/cpu_vs_cuda.py --envs 2048 --steps 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

try:
    from coinrun_mg.envs.coinrun.config import CoinRunConfig
    from coinrun_mg.envs.coinrun.core import CoinRunCore
except ImportError:  # a plain checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from envs.coinrun.config import CoinRunConfig
    from envs.coinrun.core import CoinRunCore


def compare(obs_mode: str, num_envs: int, steps: int) -> None:
    config = CoinRunConfig(obs_mode=obs_mode)
    cores = {
        "cpu": CoinRunCore(num_envs, config, device="cpu", compile=False),
        "cuda eager": CoinRunCore(num_envs, config, device="cuda", compile=False),
        "cuda compiled": CoinRunCore(num_envs, config, device="cuda", compile=True),
    }
    for core in cores.values():
        core.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    first_difference, ended = {}, 0
    for t in range(steps):
        actions = torch.randint(0, 9, (num_envs,), generator=gen)
        out = {k: core.step(actions.to(core.device)) for k, core in cores.items()}
        ref, ref_state = out["cpu"], cores["cpu"].state
        ended += int((ref[2] | ref[3]).sum())
        for name in ("cuda eager", "cuda compiled"):
            state = cores[name].state
            same = (
                torch.equal(out[name][0].cpu(), ref[0])
                and torch.equal(out[name][1].cpu(), ref[1])
                and torch.equal(state.agent_x.cpu(), ref_state.agent_x)
                and torch.equal(state.agent_y.cpu(), ref_state.agent_y)
            )
            if not same and name not in first_difference:
                dx = (state.agent_x.cpu() - ref_state.agent_x).abs()
                first_difference[name] = (
                    f"step {t + 1}: {int((dx > 0).sum())} envs, |dx| <= {dx.max():.2g}"
                )
    print(f"{obs_mode}: {num_envs} envs x {steps} steps, {ended} episodes ended")
    for name in ("cuda eager", "cuda compiled"):
        print(f"  {name}: {first_difference.get(name, 'identical to the CPU at every step')}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, default=2048)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("cpu_vs_cuda.py needs CUDA (torch.cuda.is_available() is False)")
    for obs_mode in ("symbolic", "pixels"):
        compare(obs_mode, args.envs, args.steps)


if __name__ == "__main__":
    main()
