"""Scripted Maze policies: walk the shortest path to the cheese or to the corner.

``distance_field`` gives every open cell's distance to a target cell (breadth-first
search over the whole batch at once); ``shortest_path_actions`` steps each agent to a
neighbour one move closer.  ``ShortestPathWalker`` keeps the fields of the levels a core
is playing and recomputes them when an environment starts a new episode.  The tests and
benchmarks use these as reference policies (a cheese walker should always collect the
cheese within the timeout, a corner walker reach the corner).
"""

from __future__ import annotations

import torch

from .moves import action_deltas
from .state import MazeState

# One action per move (procgen ids): left, down, up, right; and standing still.
MOVE_ACTIONS = (1, 3, 5, 7)
STAY = 4
TARGETS = ("cheese", "corner")
UNREACHABLE = -1


def distance_field(wall: torch.Tensor, target_x: torch.Tensor, target_y: torch.Tensor):
    """int64 ``[B, D, D]`` (x-major): moves from each open cell to its level's target cell,
    ``UNREACHABLE`` for walls and cells cut off from the target."""
    b, d = wall.shape[0], wall.shape[1]
    cells = torch.arange(d, device=wall.device)
    free = ~wall
    reached = (cells[None, :, None] == target_x[:, None, None]) & (
        cells[None, None, :] == target_y[:, None, None]
    )
    reached &= free
    dist = torch.zeros((b, d, d), dtype=torch.int64, device=wall.device)
    while True:
        dist += ~reached
        grown = reached.clone()
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown[:, :, 1:] |= reached[:, :, :-1]
        grown[:, :, :-1] |= reached[:, :, 1:]
        grown &= free
        if torch.equal(grown, reached):
            break
        reached = grown
    return torch.where(reached, dist, UNREACHABLE)


def shortest_path_actions(
    dist: torch.Tensor, agent_x: torch.Tensor, agent_y: torch.Tensor
) -> torch.Tensor:
    """int64 ``[B]``: for each agent, a move onto a neighbour one step closer to the
    target of ``dist`` (``STAY`` on the target or where it is unreachable)."""
    b, d = dist.shape[0], dist.shape[1]
    flat = dist.reshape(b, -1)
    here = flat.gather(1, (agent_x * d + agent_y)[:, None])[:, 0]
    action = torch.full_like(agent_x, STAY)
    for a in MOVE_ACTIONS:
        dx, dy = action_deltas(torch.tensor(a, device=dist.device))
        x, y = agent_x + dx, agent_y + dy
        inside = (x >= 0) & (x < d) & (y >= 0) & (y < d)
        there = flat.gather(1, (x.clamp(0, d - 1) * d + y.clamp(0, d - 1))[:, None])[:, 0]
        closer = inside & (here > 0) & (there == here - 1)
        action = torch.where(closer, a, action)
    return action


def target_cells(state: MazeState, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The world cell a walker heads for: the cheese, or the maze's top-right cell."""
    if target == "cheese":
        return state.cheese_x, state.cheese_y
    if target == "corner":
        top = state.margin + state.maze_dim - 1
        return top, top
    raise ValueError(f"target={target!r} is invalid; accepted values are {TARGETS}")


class ShortestPathWalker:
    """A scripted policy for a ``MazeCore``: call it for the next actions of all of the
    core's environments.  It walks the shortest path to ``target`` ("cheese" or
    "corner") and recomputes an environment's path when its level changes."""

    def __init__(self, core, target: str = "cheese"):
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is invalid; accepted values are {TARGETS}")
        self.core = core
        self.target = target
        self._dist: torch.Tensor | None = None
        self._episode_of: torch.Tensor | None = None  # (env_key, episode) of each field

    def __call__(self) -> torch.Tensor:
        s = self.core.state
        episode = torch.stack((s.env_key, s.episode), dim=1)
        if self._dist is None:
            self._dist = distance_field(s.wall, *target_cells(s, self.target))
        else:
            changed = (episode != self._episode_of).any(dim=1).nonzero().squeeze(1)
            if changed.numel():
                one = s.index(changed)
                self._dist[changed] = distance_field(one.wall, *target_cells(one, self.target))
        self._episode_of = episode
        return shortest_path_actions(self._dist, s.agent_x, s.agent_y)


def world_from_planes(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(wall, cheese, agent)`` bool ``[N, D, D]`` (x-major, y up) from symbolic
    observations uint8 ``[N, D, D, 3]`` (row 0 at the top; planes wall, cheese, agent)."""
    world = obs.flip(1).transpose(1, 2) > 0
    return world[..., 0], world[..., 1], world[..., 2]


def _cell_of(plane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (first) marked cell of each ``[D, D]`` plane (x-major)."""
    d = plane.shape[-1]
    flat = plane.reshape(plane.shape[0], -1).to(torch.uint8).argmax(dim=1)
    return flat // d, flat % d


class ObservationWalker:
    """A scripted policy that sees only symbolic observations: called on uint8 ``[N, D,
    D, 3]`` planes (either Maze backend, ``obs_mode="symbolic"``) it walks the shortest
    path to ``target``: the cheese, or the maze's top-right cell (the highest open x and
    y).  Distance fields are recomputed only for environments whose maze or target
    changed since the last call."""

    def __init__(self, target: str = "cheese"):
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is invalid; accepted values are {TARGETS}")
        self.target = target
        self._dist: torch.Tensor | None = None
        self._key: torch.Tensor | None = None  # per env: the wall and target seen

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        wall, cheese, agent = world_from_planes(torch.as_tensor(obs))
        tx, ty = self._targets(wall, cheese)
        key = torch.cat((wall.flatten(1).long(), tx[:, None], ty[:, None]), dim=1)
        if self._key is None or self._key.shape != key.shape:
            self._dist, self._key = distance_field(wall, tx, ty), key
        else:
            changed = (key != self._key).any(dim=1).nonzero().squeeze(1)
            if changed.numel():
                self._dist[changed] = distance_field(wall[changed], tx[changed], ty[changed])
                self._key[changed] = key[changed]
        return shortest_path_actions(self._dist, *_cell_of(agent))

    def _targets(self, wall: torch.Tensor, cheese: torch.Tensor):
        if self.target == "cheese":
            return _cell_of(cheese)
        open_x = (~wall).any(dim=2)  # [N, D]: columns holding an open cell
        d = wall.shape[1]
        top = (open_x * torch.arange(d, device=wall.device)).amax(dim=1)
        return top, top.clone()
