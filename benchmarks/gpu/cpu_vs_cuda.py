"""Step the same envs with the same actions on CPU and CUDA (eager and compiled physics);
report whether states, rewards and observations stay identical."""

import torch

from coinrun_mg.envs.config import CoinRunConfig
from coinrun_mg.envs.core import CoinRunCore

for mode in ("symbolic", "pixels"):
    cfg = CoinRunConfig(obs_mode=mode)
    n, steps = 2048, 300
    cores = {
        "cpu": CoinRunCore(n, cfg, device="cpu"),
        "cuda": CoinRunCore(n, cfg, device="cuda", compile=False),
        "cuda_compiled": CoinRunCore(n, cfg, device="cuda", compile=True),
    }
    obs = {k: c.reset(seed=3)[0].cpu() for k, c in cores.items()}
    gen = torch.Generator().manual_seed(0)
    first_diff = {}
    ended = 0
    for t in range(steps):
        a = torch.randint(0, 9, (n,), generator=gen)
        out = {k: c.step(a.to(c.device)) for k, c in cores.items()}
        ref = out["cpu"]
        ended += int((ref[2] | ref[3]).sum())
        for k in ("cuda", "cuda_compiled"):
            o = out[k]
            same = (
                torch.equal(o[0].cpu(), ref[0])
                and torch.equal(o[1].cpu(), ref[1])
                and torch.equal(cores[k].state.agent_x.cpu(), cores["cpu"].state.agent_x)
                and torch.equal(cores[k].state.agent_y.cpu(), cores["cpu"].state.agent_y)
            )
            if not same and k not in first_diff:
                dx = (cores[k].state.agent_x.cpu() - cores["cpu"].state.agent_x).abs()
                first_diff[k] = (t, int((dx > 0).sum()), float(dx.max()))
    print(
        mode,
        f"{n} envs x {steps} steps, {ended} episodes ended; first differences:",
        first_diff or "none",
    )
