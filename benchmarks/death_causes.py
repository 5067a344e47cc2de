#!/usr/bin/env python
"""What ends a trained agent's episodes: the coin, a timeout, or which danger.

Plays the first episode of ``--levels`` fresh levels (level seeds from ``--seed`` on) of the
policy's own training configuration (or ``--rand-fraction``), stepping the native physics
directly so the state at the moment of death is still there, and sorts every death by what
the agent's box touches then: a saw tile, a lava tile, or a walking enemy.  Also reports
where along the level deaths happen (agent x / end x, in tenths).

    python benchmarks/death_causes.py reproduce/quick/runs/f0_s0/checkpoint.pt
    python benchmarks/death_causes.py CHECKPOINT --levels 2000 --deterministic

Writes nothing; prints a table.
"""

from __future__ import annotations

import argparse
import collections

import torch

from coinrun_mg.agents import load_policy
from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import start_states
from coinrun_mg.envs.coinrun.physics import physics_step
from coinrun_mg.envs.coinrun.state import AGENT_RX, AGENT_RY, ENEMY_R, LAVA, LAVA_TOP, SAW

TILE_CAUSES = {SAW: "saw", LAVA: "lava", LAVA_TOP: "lava"}


def touched(state, i: int) -> set[str]:
    """Dangers whose boxes overlap the agent's in environment ``i`` (a hair of slack)."""
    x, y = state.agent_x[i].item(), state.agent_y[i].item()
    causes = set()
    for tx in range(int(x - AGENT_RX) - 1, int(x + AGENT_RX) + 2):
        for ty in range(int(y - AGENT_RY) - 1, int(y + AGENT_RY) + 2):
            if not (0 <= tx < state.grid.shape[1] and 0 <= ty < state.grid.shape[2]):
                continue
            near = abs(x - tx - 0.5) < AGENT_RX + 0.51 and abs(y - ty - 0.5) < AGENT_RY + 0.51
            cause = TILE_CAUSES.get(int(state.grid[i, tx, ty]))
            if near and cause:
                causes.add(cause)
    alive = state.enemy_alive[i]
    dx = (state.enemy_x[i] - x).abs() < AGENT_RX + ENEMY_R + 0.01
    dy = (state.enemy_y[i] - y).abs() < AGENT_RY + ENEMY_R + 0.01
    if bool((alive & dx & dy).any()):
        causes.add("enemy")
    return causes


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint")
    p.add_argument("--levels", type=int, default=1000)
    p.add_argument("--seed", type=int, default=2_000_000, help="first level seed")
    p.add_argument("--rand-fraction", type=float, default=None)
    p.add_argument("--deterministic", action="store_true", help="greedy actions")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    policy = load_policy(args.checkpoint, "cpu", deterministic=args.deterministic)
    kwargs = dict(policy.env_kwargs)
    if args.rand_fraction is not None:
        kwargs["rand_fraction"] = args.rand_fraction
    config = CoinRunConfig(**kwargs)
    state = start_states(torch.arange(args.levels) + args.seed, config)
    alive = torch.ones(args.levels, dtype=torch.bool)
    outcomes: collections.Counter[str] = collections.Counter()
    where: collections.Counter[int] = collections.Counter()
    for _ in range(config.max_episode_steps):
        index = torch.nonzero(alive).flatten()
        sub = state.index(index)
        if config.obs_mode == "symbolic":
            obs = render.symbolic_obs(sub, config.view_size)
        else:
            obs = render.pixel_obs(sub)
        events = physics_step(sub, policy(obs), config)
        for k, i in enumerate(index.tolist()):
            if not (events.terminated[k] or events.truncated[k]):
                continue
            alive[i] = False
            if events.coin_collected[k]:
                outcomes["coin"] += 1
            elif events.died[k]:
                outcomes["died: " + ("+".join(sorted(touched(sub, k))) or "?")] += 1
                where[int(10 * sub.agent_x[k].item() / sub.end_x[k].item())] += 1
            else:
                outcomes["timeout"] += 1
        state.assign(index, sub)
        if not alive.any():
            break

    total = sum(outcomes.values())
    print(
        f"{args.checkpoint}: {total} episodes, rand_fraction {config.rand_fraction}, "
        f"{'greedy' if args.deterministic else 'sampled'} actions"
    )
    for name, count in outcomes.most_common():
        print(f"  {name:24} {count:6d}  {count / total:.3f}")
    deaths = sum(where.values())
    if deaths:
        print("  deaths by position (agent x / end x):")
        for tenth in sorted(where):
            print(f"    {tenth / 10:.1f}-{(tenth + 1) / 10:.1f}  {where[tenth] / deaths:.3f}")


if __name__ == "__main__":
    main()
