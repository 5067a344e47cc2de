"""Micro-benchmark of envs/coinrun/observation.py (scratch; not part of the test suite).

    python benchmarks/render_micro.py [--threads 2] [--reps 30] [--levels] [--device cuda]

Times symbolic_obs (N=16384, view 13; from padded grids kept between calls, as
CoinRunCore does, and gathered from the grid) and pixel_obs (N=4096, 64 px) per call.  States
are random tiles and entities by default, or generated hard-mode levels with agents
spread along them (``--levels``).  Reports the minimum and median wall time and the
median process CPU time: on a shared machine the minimum is the number to compare,
the median picks up other processes' load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.state import GRID_H, GRID_W, MAX_ENEMIES, NUM_THEMES, EnvState


def random_state(n: int, seed: int = 0) -> EnvState:
    """Random tiles, agents anywhere in the grid, 30% of enemy slots alive anywhere."""
    g = torch.Generator().manual_seed(seed)
    s = EnvState.zeros(n, "cpu")
    s.grid = torch.randint(0, 8, (n, GRID_W, GRID_H), generator=g, dtype=torch.uint8)
    s.agent_x = 1 + torch.rand(n, generator=g) * (GRID_W - 2)
    s.agent_y = 1 + torch.rand(n, generator=g) * (GRID_H - 2)
    s.agent_vx = torch.rand(n, generator=g) - 0.5
    s.agent_vy = torch.rand(n, generator=g) * 3 - 1.5
    s.coin_x = torch.randint(0, GRID_W, (n,), generator=g)
    s.coin_y = torch.randint(0, GRID_H, (n,), generator=g)
    s.enemy_x = torch.rand(n, MAX_ENEMIES, generator=g) * GRID_W
    s.enemy_y = torch.rand(n, MAX_ENEMIES, generator=g) * GRID_H
    s.enemy_alive = torch.rand(n, MAX_ENEMIES, generator=g) < 0.3
    s.theme = torch.randint(0, NUM_THEMES, (n,), generator=g)
    return s


def level_state(n: int, seed: int = 0) -> EnvState:
    """Generated hard-mode levels, agents at random x along the level at start height."""
    from coinrun_mg.envs.coinrun.config import CoinRunConfig
    from coinrun_mg.envs.coinrun.core import initial_states

    s = initial_states(
        torch.arange(n) + seed, torch.zeros(n, dtype=torch.long), CoinRunConfig(rand_fraction=0.5)
    )
    g = torch.Generator().manual_seed(seed)
    s.agent_x = 1.5 + torch.rand(n, generator=g) * (s.end_x.float() - 1.5)
    s.agent_y = s.agent_y + torch.rand(n, generator=g) * 4
    return s


def bench(fn, reps: int, sync=lambda: None) -> tuple[float, float, float]:
    """(min wall, median wall, median process CPU) in ms per call."""
    fn()
    sync()
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(times) * 1e3, statistics.median(times) * 1e3, statistics.median(cpu) * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--levels", action="store_true", help="generated levels, not random tiles")
    p.add_argument("--sym-n", type=int, default=16384)
    p.add_argument("--pix-n", type=int, default=4096)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    make = level_state if args.levels else random_state

    def state(n: int) -> EnvState:
        s = make(n)
        return EnvState(**{k: v.to(args.device) for k, v in vars(s).items()})

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, "
        f"{'levels' if args.levels else 'random'}; load average {os.getloadavg()}"
    )
    if args.sym_n:
        s = state(args.sym_n)
        padded = render.padded_classes(s.grid, 13)  # what CoinRunCore keeps between steps
        for label, kwargs in (("", {"padded": padded}), (" (gathered from the grid)", {})):
            call = lambda kw=kwargs: render.symbolic_obs(s, 13, **kw)  # noqa: E731
            lo, med, cpu = bench(call, args.reps, sync)
            print(
                f"symbolic_obs N={args.sym_n} view=13{label}: min {lo:.2f} ms  median {med:.2f} ms"
                f"  (median CPU {cpu:.2f} ms)"
            )
    if args.pix_n:
        s = state(args.pix_n)
        lo, med, cpu = bench(lambda: render.pixel_obs(s), args.reps, sync)
        print(
            f"pixel_obs    N={args.pix_n} size=64: min {lo:.2f} ms  median {med:.2f} ms"
            f"  (median CPU {cpu:.2f} ms)"
        )


if __name__ == "__main__":
    main()
