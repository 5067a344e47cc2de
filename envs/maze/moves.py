"""Maze's moves: a pure function that advances a batched ``MazeState`` by one step.

procgen maps its 15 actions to a move ``a`` (``a % 9`` for ``a < 9``, none for the six
"special" actions 9-14), ``dx = move // 3 - 1``, ``dy = move % 3 - 1``, and Maze drops
``dy`` whenever ``dx != 0``.  So actions 0-2 step left, 3 down, 5 up, 6-8 right, and 4
and 9-14 stand still.  The agent moves exactly one cell (procgen's ``grid_step``) or
stays put when the target cell is wall or outside the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import MazeConfig
from .state import CHEESE_REWARD, MazeState


@dataclass
class StepEvents:
    """What happened in one step, per environment (all ``[N]`` tensors)."""

    reward: torch.Tensor  # float32
    terminated: torch.Tensor  # bool: the cheese, or (corner_terminates) the corner region
    # entered while the cheese lies outside it
    truncated: torch.Tensor  # bool: the step limit was hit
    cheese_collected: torch.Tensor  # bool
    died: torch.Tensor  # bool: always False (nothing kills in Maze)


def action_deltas(actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dy)`` of each action, as procgen's Maze reads it."""
    move = torch.where(actions < 9, actions, 4)
    dx = move // 3 - 1
    dy = torch.where(dx != 0, 0, move % 3 - 1)
    return dx, dy


def in_corner(state: MazeState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Whether world cells ``(x, y)`` lie in their level's top-right corner region (the
    maze ends at the region's far side, so only the lower bound is tested)."""
    return (x >= state.corner_lo) & (y >= state.corner_lo)


def maze_step(state: MazeState, actions: torch.Tensor, config: MazeConfig) -> StepEvents:
    """Move every agent by its action (``state`` is updated in place)."""
    d = state.world_dim
    dx, dy = action_deltas(actions)
    x, y = state.agent_x + dx, state.agent_y + dy
    inside = (x >= 0) & (x < d) & (y >= 0) & (y < d)
    flat = x.clamp(0, d - 1) * d + y.clamp(0, d - 1)
    free = inside & ~state.wall.reshape(state.num_envs, -1).gather(1, flat[:, None])[:, 0]
    state.agent_x = torch.where(free, x, state.agent_x)
    state.agent_y = torch.where(free, y, state.agent_y)
    state.steps = state.steps + 1

    cheese = (state.agent_x == state.cheese_x) & (state.agent_y == state.cheese_y)
    corner = in_corner(state, state.agent_x, state.agent_y)
    state.reached_corner = state.reached_corner | corner
    # corner_terminates: the corner ends the episode only while the cheese lies elsewhere.
    early = corner & ~in_corner(state, state.cheese_x, state.cheese_y)
    terminated = cheese | (early if config.corner_terminates else torch.zeros_like(corner))
    truncated = (state.steps >= config.max_episode_steps) & ~terminated
    return StepEvents(
        reward=cheese.to(torch.float32) * CHEESE_REWARD,
        terminated=terminated,
        truncated=truncated,
        cheese_collected=cheese,
        died=torch.zeros_like(cheese),
    )
