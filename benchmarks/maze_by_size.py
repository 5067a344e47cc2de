#!/usr/bin/env python
"""A Maze agent's cheese rate by maze size: where a policy that collects some cheese fails.

Plays the first episode of ``--levels`` fresh levels (level keys from ``--seed``, by
default 1,000,000 as ``learning_curve.py`` evaluates) in the checkpoint's training
configuration, with the policy as trained (sampled actions; ``--greedy`` for the most
likely one), and prints the share of levels won per maze side (3, 5, ... up to the
world's side) with the mean episode length.

    python benchmarks/maze_by_size.py runs/maze-quick_f0_s1
    python benchmarks/maze_by_size.py CHECKPOINT --levels 2000 --greedy --json by_size.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from coinrun_mg.agents import load_policy
from coinrun_mg.envs.maze import MazeConfig, MazeCore

STAND_STILL = 4


def by_size(policy, config: MazeConfig, levels: int, seed: int) -> list[dict]:
    """Rows ``{maze_dim, levels, cheese_rate, episode_length}``, one per maze side."""
    core = MazeCore(levels, config, device=policy.device, check_actions=False)
    obs, _ = core.reset(seed)
    maze_dim = core.state.maze_dim.clone()
    finished = torch.zeros(levels, dtype=torch.bool, device=core.device)
    cheese = torch.zeros_like(finished)
    length = torch.zeros(levels, device=core.device)
    for _ in range(config.max_episode_steps):
        # Finished environments stand still at the start of their next level, where
        # nothing ends an episode within this loop (as first_episode_stats does).
        actions = torch.where(finished, STAND_STILL, policy(obs))
        obs, _, terminated, truncated, info = core.step(actions)
        length += ~finished
        now = ~finished & (terminated | truncated)
        cheese |= now & info["cheese_collected"]
        finished |= now
        if bool(finished.all()):
            break
    rows = []
    for side in sorted(set(maze_dim.tolist())):
        on = maze_dim == side
        rows.append(
            {
                "maze_dim": side,
                "levels": int(on.sum()),
                "cheese_rate": round(cheese[on].float().mean().item(), 4),
                "episode_length": round(length[on].mean().item(), 1),
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a Maze checkpoint file or run directory")
    p.add_argument("--levels", type=int, default=1000, help="levels (default 1000)")
    p.add_argument("--seed", type=int, default=1_000_000, help="first level key")
    p.add_argument("--greedy", action="store_true", help="the most likely action")
    p.add_argument("--torch-seed", type=int, default=0, help="seed of the sampled actions")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    torch.manual_seed(args.torch_seed)
    policy = load_policy(args.checkpoint, args.device, deterministic=args.greedy, game="maze")
    rows = by_size(policy, MazeConfig(**policy.env_kwargs), args.levels, args.seed)
    print("| maze side | levels | cheese rate | episode length |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['maze_dim']} | {r['levels']} | {r['cheese_rate']:.3f} | {r['episode_length']} |"
        )
    won = sum(r["cheese_rate"] * r["levels"] for r in rows) / args.levels
    print(f"all {args.levels} levels: cheese rate {won:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "rows": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
