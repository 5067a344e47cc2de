#!/usr/bin/env python
"""Level generation and step throughput of the native Maze (``coinrun_mg/Maze-v0``).

Measures, per distribution mode:

* ``levels/s``: ``generate_mazes`` alone (the Kruskal/Boruvka mazes) and ``start_states``
  (mazes, cheese placement and the decision-level path search: what an episode start
  costs), in batches of ``--batch`` level seeds.
* ``steps/s``: ``MazeCore`` (``autoreset="same_step"``, ``check_actions=False``) with
  random actions drawn by ``torch.randint`` inside the timed loop, for both ``obs_mode``s
  and each env count of ``--envs``.  ``--max-steps`` short episodes make level
  generation part of the timed loop (random agents rarely find the cheese).

Each measurement is warmed up once and then repeated for about ``--seconds``.  Prints a
markdown table; the machine's load average is printed with it, since the numbers are only
comparable on an otherwise idle machine.

    python benchmarks/maze_speed.py
    python benchmarks/maze_speed.py --device cuda --envs 1024,16384 --batch 16384
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from coinrun_mg.envs.checks import resolve_device
from coinrun_mg.envs.maze import MazeConfig, MazeCore, generate_mazes, start_states
from coinrun_mg.envs.maze.config import WORLD_DIM


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, items: int, seconds: float, device: torch.device) -> float:
    """Items per second of ``fn`` (one warm-up call, then repeated for ``seconds``)."""
    fn(0)
    _sync(device)
    start, calls = time.perf_counter(), 0
    while True:
        fn(calls + 1)
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return items * calls / elapsed


def level_rates(mode: str, batch: int, seconds: float, device: torch.device) -> dict:
    config = MazeConfig(distribution_mode=mode, rand_fraction=0.1, corner_size=5)
    seeds = torch.arange(batch, device=device, dtype=torch.int64) * 7919

    def mazes(r):
        generate_mazes(seeds + r * batch, WORLD_DIM[mode])

    def starts(r):
        start_states(seeds + r * batch, config)

    return {
        "mazes": _rate(mazes, batch, seconds, device),
        "starts": _rate(starts, batch, seconds, device),
    }


def step_rate(mode: str, obs_mode: str, envs: int, max_steps: int, seconds: float, device) -> float:
    config = MazeConfig(distribution_mode=mode, obs_mode=obs_mode, max_episode_steps=max_steps)
    core = MazeCore(envs, config, device=device, check_actions=False, compile=False)
    core.reset(0)
    steps = 20

    def run(_):
        for _ in range(steps):
            core.step(torch.randint(0, 15, (envs,), device=device))

    return _rate(run, envs * steps, seconds, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=4096, help="levels per generated batch")
    parser.add_argument("--envs", default="64,1024,4096")
    parser.add_argument("--max-steps", type=int, default=100, help="episode step limit")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch threads {args.threads}, load average {load:.2f}\n")

    print("| mode | mazes/s | episode starts/s |")
    print("|---|---|---|")
    for mode in WORLD_DIM:
        r = level_rates(mode, args.batch, args.seconds, device)
        print(f"| {mode} | {r['mazes']:,.0f} | {r['starts']:,.0f} |")

    print("\n| mode | obs | envs | steps/s |")
    print("|---|---|---|---|")
    for mode in WORLD_DIM:
        for obs_mode in ("symbolic", "pixels"):
            for envs in (int(n) for n in args.envs.split(",")):
                rate = step_rate(mode, obs_mode, envs, args.max_steps, args.seconds, device)
                print(f"| {mode} | {obs_mode} | {envs} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
