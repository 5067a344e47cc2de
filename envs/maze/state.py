"""Constants and the batched state of the native Maze.

Plain data: the level generator (``levels.py``) fills it, the moves (``moves.py``)
advance it and the observations (``observation.py``) read it.  All tensors share a
leading batch dimension ``N`` (one entry per environment).

Coordinates are procgen's: world cells ``(x, y)`` with ``y`` pointing up, grids stored
x-major (``wall[n, x, y]``, as CoinRun stores its grid).  The maze of side ``maze_dim``
sits centred in the ``world_dim`` x ``world_dim`` world at offset ``margin``: maze cell
``(i, j)`` is world cell ``(margin + i, margin + j)``; the start is maze cell ``(0, 0)``
(bottom left) and the corner is ``(maze_dim - 1, maze_dim - 1)`` (top right).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

NUM_ACTIONS = 15  # procgen's action set; Maze uses four of its moves (see moves.py)
CHEESE_REWARD = 10.0


@dataclass
class MazeState:
    """Batched state of ``N`` Maze environments (all tensors on one device).

    Level (fixed for an episode):
        wall: bool ``[N, D, D]`` world cells that are wall, x-major, ``D = world_dim``.
        level_seed: int64 ``[N]`` the procgen-style level seed of the current episode.
        maze_dim, margin: int64 ``[N]`` the maze's side and its offset in the world.
        cheese_x, cheese_y: int64 ``[N]`` the cheese's world cell.
        cheese_moved: bool ``[N]`` this level is one of the ``rand_fraction`` share whose
            cheese was placed anywhere (stock procgen) instead of in the corner region.
        corner_lo: int64 ``[N]`` world x (and y) where the top-right corner region starts:
            the agent is in it when both its coordinates are at least this.
        decision_level: bool ``[N]`` the paths to the cheese and to the corner part
            before either ends (``paths.py``).

    Dynamic state:
        agent_x, agent_y: int64 ``[N]`` the agent's world cell.
        reached_corner: bool ``[N]`` the agent has been in the corner region this episode.
        steps: int64 ``[N]`` steps taken in the current episode.

    Episode bookkeeping (as CoinRun's ``EnvState``):
        env_key: int64 ``[N]`` per-environment seed key (the vector env's ``seed + i``).
        episode: int64 ``[N]`` episodes started since the key was set.
    """

    wall: torch.Tensor
    level_seed: torch.Tensor
    maze_dim: torch.Tensor
    margin: torch.Tensor
    cheese_x: torch.Tensor
    cheese_y: torch.Tensor
    cheese_moved: torch.Tensor
    corner_lo: torch.Tensor
    decision_level: torch.Tensor
    agent_x: torch.Tensor
    agent_y: torch.Tensor
    reached_corner: torch.Tensor
    steps: torch.Tensor
    env_key: torch.Tensor
    episode: torch.Tensor

    @property
    def num_envs(self) -> int:
        return self.wall.shape[0]

    @property
    def world_dim(self) -> int:
        return self.wall.shape[1]

    @property
    def device(self) -> torch.device:
        return self.wall.device

    @classmethod
    def zeros(cls, num_envs: int, world_dim: int, device: torch.device | str) -> MazeState:
        """An all-wall state; every environment must be reset before it is stepped."""

        def i():
            return torch.zeros(num_envs, dtype=torch.int64, device=device)

        def b():
            return torch.zeros(num_envs, dtype=torch.bool, device=device)

        wall = torch.ones((num_envs, world_dim, world_dim), dtype=torch.bool, device=device)
        return cls(
            wall=wall,
            level_seed=i(),
            maze_dim=i(),
            margin=i(),
            cheese_x=i(),
            cheese_y=i(),
            cheese_moved=b(),
            corner_lo=i(),
            decision_level=b(),
            agent_x=i(),
            agent_y=i(),
            reached_corner=b(),
            steps=i(),
            env_key=i(),
            episode=i(),
        )

    def index(self, idx: torch.Tensor | slice) -> MazeState:
        """The sub-batch ``idx`` (a copy for index tensors, a view for slices)."""
        if isinstance(idx, torch.Tensor) and idx.dtype in (torch.int32, torch.int64):
            return MazeState(
                **{f.name: getattr(self, f.name).index_select(0, idx) for f in fields(self)}
            )
        return MazeState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def assign(self, idx: torch.Tensor, other: MazeState) -> None:
        """Write ``other`` into the environments ``idx`` (int64 indices, each at most
        once); ``other`` holds one environment per index."""
        for f in fields(self):
            getattr(self, f.name).index_copy_(0, idx, getattr(other, f.name))
