"""A million random steps: the agent never overlaps a solid tile or leaves the grid."""

from __future__ import annotations

import torch

from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import CoinRunCore
from coinrun_mg.envs.coinrun.state import AGENT_RX, AGENT_RY, GRID_H, GRID_W, NUM_SOLID

MARGIN = 0.02  # snapping leaves the box exactly on tile edges; look a hair inside


def _overlaps_solid(core: CoinRunCore) -> torch.Tensor:
    s = core.state
    n = torch.arange(s.num_envs)
    hit = torch.zeros(s.num_envs, dtype=torch.bool)
    for fx in (s.agent_x - AGENT_RX + MARGIN, s.agent_x + AGENT_RX - MARGIN):
        for k in range(3):
            y = torch.minimum(
                (s.agent_y - AGENT_RY + MARGIN).floor() + k, (s.agent_y + AGENT_RY - MARGIN).floor()
            )
            hit |= s.grid[n, fx.floor().long(), y.long()] < NUM_SOLID
    return hit


def test_random_play_never_enters_walls():
    num_envs, steps = 2048, 500  # 1,024,000 steps
    config = CoinRunConfig(distribution_mode="hard")
    core = CoinRunCore(num_envs, config, device="cpu", autoreset="same_step")
    core.reset(seed=2024)
    gen = torch.Generator().manual_seed(0)
    episodes = 0
    for _ in range(steps):
        # Half the envs press right (with or without jumping) to get deep into levels.
        random = torch.randint(0, 15, (num_envs,), generator=gen)
        rightward = torch.randint(7, 9, (num_envs,), generator=gen)
        use_right = torch.rand(num_envs, generator=gen) < 0.5
        _, _, terminated, truncated, _ = core.step(torch.where(use_right, rightward, random))
        episodes += int((terminated | truncated).sum())
        s = core.state
        assert bool(((s.agent_x > AGENT_RX) & (s.agent_x < GRID_W - AGENT_RX)).all())
        assert bool(((s.agent_y > AGENT_RY) & (s.agent_y < GRID_H - AGENT_RY)).all())
        assert bool(s.agent_vx.abs().max() <= 0.5 + 1e-6)
        assert bool(s.agent_vy.abs().max() <= 1.5 + 1e-6)
        bad = _overlaps_solid(core)
        assert not bool(bad.any()), (
            f"agent inside a wall: env {int(bad.nonzero()[0])} at "
            f"({float(s.agent_x[bad][0]):.3f}, {float(s.agent_y[bad][0]):.3f})"
        )
    assert episodes > 2000  # the run covered many levels, not one
