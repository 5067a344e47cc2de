"""The native Maze core: ``num_envs`` environments as tensors on one device.

``MazeCore`` owns a batched ``MazeState``, generates levels ahead of time, steps the
moves (``moves.py``), resets finished environments and renders observations
(``observation.py``).  It speaks the protocol of the family's Gymnasium facades
(``envs/gym_env.py``) and of CoinRun's core: same arguments, autoreset modes, level
sequences and errors.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import torch

from ..compile import CompiledOrEager
from ..native_core import NativeCore, as_index
from ..rng import level_seeds_for
from . import observation
from .config import MazeConfig
from .levels import corner_lo, generate_mazes, place_cheese
from .moves import StepEvents, in_corner, maze_step
from .paths import decision_levels
from .state import NUM_ACTIONS, MazeState

# --------------------------------------------------------------------------------------
# Episode starts
# --------------------------------------------------------------------------------------


def start_states(level_seeds: torch.Tensor, config: MazeConfig) -> MazeState:
    """Fresh episode states for the given level seeds (``env_key`` and ``episode`` zero)."""
    seeds = level_seeds.to(torch.int64)
    levels = generate_mazes(seeds, config.world_dim)
    cheese_x, cheese_y, moved = place_cheese(
        levels, seeds, config.rand_fraction, config.corner_size
    )
    s = MazeState.zeros(seeds.shape[0], config.world_dim, seeds.device)
    s.wall, s.level_seed = levels.wall, seeds
    s.maze_dim, s.margin = levels.maze_dim, levels.margin
    s.cheese_x, s.cheese_y, s.cheese_moved = cheese_x, cheese_y, moved
    s.corner_lo = corner_lo(levels, config.corner_size)
    s.decision_level = decision_levels(levels, cheese_x, cheese_y)
    s.agent_x, s.agent_y = levels.margin.clone(), levels.margin.clone()
    # Only a corner region as large as the maze holds the start.
    s.reached_corner = in_corner(s, s.agent_x, s.agent_y)
    return s


def initial_states(env_key: torch.Tensor, episode: torch.Tensor, config: MazeConfig) -> MazeState:
    """Fresh episode states for a batch of (environment key, episode number) pairs."""
    s = start_states(level_seeds_for(env_key, episode, config), config)
    s.env_key, s.episode = env_key.clone(), episode.clone()
    return s


# What the infos of reset and step hold, per environment: the family's events under
# Maze's names (envs/events.py), whether the level is a decision level, then world cells
# for analysis.
INFO_KEYS = (
    "cheese_collected",
    "reached_corner",
    "died",
    "timed_out",
    "cheese_moved",
    "level_seed",
    "decision_level",
    "agent_x",
    "agent_y",
    "cheese_x",
    "cheese_y",
)


class MazeCore(NativeCore):
    """``num_envs`` Maze environments as tensors on one device.

    ``reset(seed)`` and ``step(actions)`` take and return torch tensors on ``device``
    (observations uint8 ``[N, H, W, C]``).  ``autoreset`` chooses what happens when an
    episode ends: ``"same_step"`` (the returned observation already belongs to the next
    episode; infos describe the step that ended), ``"next_step"`` (Gymnasium's
    convention: the next ``step`` call resets and ignores its action) or ``"disabled"``.

    Finished environments draw the next level of their own sequence (``level_seeds_for``:
    environment ``i`` of ``reset(seed)`` plays the levels of key ``seed + i``).  Levels are
    generated ahead of time: each environment keeps its next level in a bank, and once
    ``prefetch`` of them (default ``num_envs // 4``) are used up, all missing ones are
    generated in one batch, since a batch costs a fixed number of tensor operations
    whatever its size.

    ``compile`` (``"auto"``, ``True``, ``False``) runs the step and the observation
    through ``torch.compile``; ``"auto"`` compiles on CUDA only.  The moves are integer
    arithmetic, so compiled and eager steps agree exactly.
    """

    config_class = MazeConfig
    num_actions = NUM_ACTIONS
    info_keys = INFO_KEYS
    _start_states = staticmethod(start_states)
    _restart_zeroed = ("reward", "terminated", "truncated", "cheese_collected")

    def __init__(
        self,
        num_envs: int,
        config: MazeConfig | None = None,
        device: str | torch.device = "auto",
        autoreset: str = "same_step",
        check_actions: bool = True,
        prefetch: int | None = None,
        compile: bool | str = "auto",
    ):
        super().__init__(num_envs, config, device, autoreset, check_actions, prefetch, compile)
        render = observation.symbolic_obs
        # Agent-centred symbolic views keep their wall image with this margin of wall.
        self._margin = self.config.view_size // 2
        self._view = {}
        if self.config.view_size:
            render = observation.egocentric_obs
            self._view = {"view_size": self.config.view_size}
        if self.config.obs_mode == "pixels":
            render = observation.pixel_obs
            self._view = {"tables": observation.word_tables(self.config.world_dim, self.device)}
        self._moves = CompiledOrEager(maze_step, self.device) if self.compiled else maze_step
        self._render = CompiledOrEager(render, self.device) if self.compiled else render
        self._render_eager = render
        # Symbolic views start from an image of the walls (observation.symbolic_walls),
        # kept between steps and redrawn only for environments whose level changes.
        self._walls: torch.Tensor | None = None
        self.state: MazeState | None = None
        self._bank: MazeState | None = None  # row i: env i's next level
        self._bank_ready: torch.Tensor | None = None

    @property
    def state(self) -> MazeState | None:
        """The current episodes of all environments (None before the first reset).

        Assign a whole new state rather than editing a level's ``wall`` in place: the
        core keeps the symbolic view's image of the walls.
        """
        return self._state

    @state.setter
    def state(self, value: MazeState | None) -> None:
        self._state = value
        self._levels_changed(None)

    def _levels_changed(self, index: torch.Tensor | None) -> None:
        """Redraw the kept wall images of environments ``index`` (all if None)."""
        if self._state is None or self.config.obs_mode != "symbolic":
            self._walls = None
        elif index is None or self._walls is None:
            self._walls = observation.symbolic_walls(self._state.wall, self._margin)
        else:
            # index_copy_, not self._walls[index] = ...: on the CPU, index_put_ into a 4-d
            # tensor costs tens of ms at 16,384 envs, however few rows it writes.
            walls = observation.symbolic_walls(
                self._state.wall.index_select(0, index), self._margin
            )
            self._walls.index_copy_(0, index, walls)

    # -- episode starts ----------------------------------------------------------------
    def reset_keys(self, keys: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """(Re)start environments ``index`` (all if None) at episode 0 of the given keys."""
        keys = torch.as_tensor(keys, device=self.device).to(torch.int64)
        fresh = initial_states(keys, torch.zeros_like(keys), self.config)
        if self.state is None or index is None:
            self.state = fresh
            self._bank = MazeState.zeros(self.num_envs, self.config.world_dim, self.device)
            self._bank_ready = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            self._pending_reset.zero_()
            return
        index = as_index(index, self.device)
        self.state.assign(index, fresh)
        self._levels_changed(index)
        self._bank_ready[index] = False
        self._pending_reset[index] = False

    def _start_next_episode(self, done: torch.Tensor) -> None:
        index = done.nonzero().squeeze(1)
        if index.numel() == 0:
            return
        if not bool(self._bank_ready[index].all()):
            self._fill_bank()
        self.state.assign(index, self._bank.index(index))
        self._levels_changed(index)
        self._bank_ready[index] = False
        if self.num_envs - int(self._bank_ready.sum()) >= self.prefetch:
            self._fill_bank()

    def _fill_bank(self) -> None:
        """Generate every level missing from the bank (each env's next episode), in one
        batch."""
        missing = (~self._bank_ready).nonzero().squeeze(1)
        s = self.state
        levels = initial_states(s.env_key[missing], s.episode[missing] + 1, self.config)
        self._bank.assign(missing, levels)
        self._bank_ready[missing] = True

    # -- saving and restoring ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the environments' future, as tensors (for checkpoints)."""
        if self.state is None:
            raise RuntimeError("state_dict() before reset(): there is no state to save")
        return {
            "state": {f.name: getattr(self.state, f.name) for f in fields(MazeState)},
            "bank": {f.name: getattr(self._bank, f.name) for f in fields(MazeState)},
            "bank_ready": self._bank_ready,
            "pending_reset": self._pending_reset,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (copied to this core's device)."""
        names = {f.name for f in fields(MazeState)}
        wall = saved["state"].get("wall")
        expected = (self.num_envs, self.config.world_dim, self.config.world_dim)
        if set(saved["state"]) != names or wall is None or tuple(wall.shape) != expected:
            raise ValueError(
                f"the saved environment state has fields {sorted(saved['state'])} with walls "
                f"of shape {None if wall is None else tuple(wall.shape)}; this core expects "
                f"{sorted(names)} with walls of shape {expected} (a different version, "
                "num_envs or distribution_mode)"
            )

        def copied(tensors: dict[str, torch.Tensor]) -> MazeState:
            return MazeState(**{k: v.to(self.device, copy=True) for k, v in tensors.items()})

        self.state = copied(saved["state"])
        self._bank = copied(saved["bank"])
        self._bank_ready = saved["bank_ready"].to(self.device, copy=True)
        self._pending_reset = saved["pending_reset"].to(self.device, copy=True)

    # -- stepping ------------------------------------------------------------------------
    def _step_events(self, actions: torch.Tensor) -> StepEvents:
        return self._moves(self.state, actions, self.config)

    # -- observations and infos ---------------------------------------------------------------
    def observe(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Observations of all environments, or of those in ``index`` (int64 ``[K]``)."""
        kept = {} if self._walls is None else {"walls": self._walls}
        if index is None:
            # the fixed-shape call, compiled where enabled
            return self._render(self.state, **kept, **self._view)
        index = as_index(index, self.device)
        kept = {k: v.index_select(0, index) for k, v in kept.items()}
        return self._render_eager(self.state.index(index), **kept, **self._view)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        if self.config.obs_mode == "symbolic":
            d = self.config.symbolic_side
            return (d, d, observation.SYMBOLIC_CHANNELS)
        return (observation.PIXEL_SIZE, observation.PIXEL_SIZE, 3)

    def _info(self, events: StepEvents | None) -> dict[str, torch.Tensor]:
        s = self.state
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return {
            "cheese_collected": false if events is None else events.cheese_collected,
            "reached_corner": s.reached_corner.clone(),
            "died": false if events is None else events.died,
            "timed_out": false if events is None else events.truncated,
            "cheese_moved": s.cheese_moved.clone(),
            "level_seed": s.level_seed.clone(),
            "decision_level": s.decision_level.clone(),
            "agent_x": s.agent_x.clone(),
            "agent_y": s.agent_y.clone(),
            "cheese_x": s.cheese_x.clone(),
            "cheese_y": s.cheese_y.clone(),
        }

    def render_frame(self, index: int = 0) -> np.ndarray:
        """A large RGB view of environment ``index`` for people (``render_mode='rgb_array'``)."""
        return observation.human_frame(self.state, index)
