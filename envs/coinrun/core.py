"""The native CoinRun core: ``num_envs`` environments as tensors on one device.

``CoinRunCore`` owns a batched ``EnvState``, generates levels ahead of time, steps the
physics (``physics.py``), resets finished environments and renders observations
(``observation.py``).  Tensors stay on the device: the PPO agent calls
``CoinRunCore.step`` directly, and the Gymnasium facades (``gym_env.py``) convert to
numpy.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from .. import malloc
from ..compile import CompiledOrEager
from ..native_core import NativeCore
from ..rng import level_seeds_for
from . import observation
from .config import CoinRunConfig
from .levels import generate_levels, place_coins
from .physics import (
    StepEvents,
    move_agent_step,
    physics_step,
    physics_with,
    step_alive_enemies,
)
from .state import (
    AGENT_START_X,
    AGENT_START_Y,
    NUM_ACTIONS,
    EnemySlots,
    EnvState,
    alive_enemy_slots,
    as_index,
)

# --------------------------------------------------------------------------------------
# Episode starts (level seeds: ``level_seeds_for`` in envs/rng.py, shared by the family)
# --------------------------------------------------------------------------------------


def initial_states(env_key: torch.Tensor, episode: torch.Tensor, config: CoinRunConfig) -> EnvState:
    """Fresh episode states for a batch of (environment key, episode number) pairs."""
    s = start_states(level_seeds_for(env_key, episode, config), config)
    s.env_key, s.episode = env_key.clone(), episode.clone()
    return s


def start_states(level_seeds: torch.Tensor, config: CoinRunConfig) -> EnvState:
    """Fresh episode states for the given level seeds (``env_key`` and ``episode`` zero)."""
    seeds = level_seeds.to(torch.int64)
    levels = generate_levels(seeds, hard=config.hard)
    coin_x, coin_y, moved = place_coins(
        levels, seeds, config.rand_fraction, config.coin_placement, config.coin_region
    )
    s = EnvState.zeros(seeds.shape[0], seeds.device)
    s.grid = levels.grid
    s.solid_bits, s.crate_bits, s.danger_bits = (
        levels.solid_bits,
        levels.crate_bits,
        levels.danger_bits,
    )
    s.level_seed = seeds
    s.theme = levels.theme
    s.coin_x, s.coin_y, s.coin_randomized = coin_x, coin_y, moved
    s.end_x, s.end_y = levels.end_x, levels.end_y
    s.enemy_x, s.enemy_y, s.enemy_vx = levels.enemy_x, levels.enemy_y, levels.enemy_vx
    s.enemy_lo, s.enemy_hi, s.enemy_alive = levels.enemy_lo, levels.enemy_hi, levels.enemy_alive
    s.agent_x = torch.full_like(s.agent_x, AGENT_START_X)
    s.agent_y = torch.full_like(s.agent_y, AGENT_START_Y)
    s.facing_right = torch.ones_like(s.facing_right)
    return s


# Compiled CPU batches from this size walk only the alive enemies, in a second graph
# (docs/design-notes-envs.md, "Compilation").
_COMPILED_ALIVE_WALK_FROM = 8192

# What the infos of reset and step hold, per environment (the family's events under
# CoinRun's names, envs/events.py, then positions for analysis).
INFO_KEYS = (
    "coin_collected",
    "reached_end",
    "died",
    "timed_out",
    "coin_randomized",
    "level_seed",
    "agent_x",
    "coin_x",
    "end_x",
)


class CoinRunCore(NativeCore):
    """``num_envs`` CoinRun environments as tensors on one device.

    ``reset(seed)`` and ``step(actions)`` take and return torch tensors on ``device``
    (observations uint8 ``[N, H, W, C]``).  ``autoreset`` chooses what happens when an
    episode ends: ``"same_step"`` (the returned observation already belongs to the next
    episode; infos describe the step that ended), ``"next_step"`` (Gymnasium's
    convention: the next ``step`` call resets and ignores its action) or ``"disabled"``.

    Finished environments draw the next level of their own sequence; levels are generated
    ahead of time in batches so generation stays off the per-step path: each environment
    keeps its next two levels in a bank, and once ``prefetch`` levels (default
    ``num_envs // 4``) are missing from it, all of them are generated in one batch.

    ``compile`` (``"auto"``, ``True``, ``False``) runs the physics and the observation
    (on the CPU only the symbolic observation's per-environment arithmetic, and in large
    batches the physics as two graphs: the agent's part, and a walk of the alive enemies
    only) through ``torch.compile``; ``"auto"`` compiles on CUDA only.  The first
    step then takes a while (torch caches the result on disk for later processes).
    Compiled CPU steps are bit-identical to eager ones.  Compiled CUDA kernels fuse
    multiply-adds, so positions can differ from eager / CPU ones in the last bit and
    trajectories drift apart over time; a compiled CUDA run is still reproducible on its
    own: same seed, same device, same result.
    """

    config_class = CoinRunConfig
    num_actions = NUM_ACTIONS
    info_keys = INFO_KEYS
    _start_states = staticmethod(start_states)
    _restart_zeroed = ("reward", "terminated", "truncated", "coin_collected", "died")
    _wanted_dtype = "integers in [0, {num_actions})"

    def __init__(
        self,
        num_envs: int,
        config: CoinRunConfig | None = None,
        device: str | torch.device = "auto",
        autoreset: str = "same_step",
        check_actions: bool = True,
        prefetch: int | None = None,
        compile: bool | str = "auto",
    ):
        super().__init__(num_envs, config, device, autoreset, check_actions, prefetch, compile)
        # On the CPU the core keeps the list of alive enemies (self._enemy_slots, updated
        # when levels change) and the physics walks only those; compiled, the agent's part
        # and that walk (its size symbolic) are two graphs.  A second graph call costs
        # more than the one graph's walk over all slots in small batches, so below
        # _COMPILED_ALIVE_WALK_FROM envs compiled cores keep the one graph, as a GPU does.
        self._keep_enemy_slots = self.device.type == "cpu"
        walk_alive = self._keep_enemy_slots and (
            not self.compiled or num_envs >= _COMPILED_ALIVE_WALK_FROM
        )
        if walk_alive:
            self._move_agent_step = move_agent_step
            self._step_alive_enemies = step_alive_enemies
            if self.compiled:
                self._move_agent_step = CompiledOrEager(move_agent_step, self.device)
                self._step_alive_enemies = CompiledOrEager(
                    step_alive_enemies, self.device, dynamic=True
                )
            self._physics = self._physics_alive_enemies
        else:
            self._physics = (
                CompiledOrEager(physics_step, self.device) if self.compiled else physics_step
            )
        # Observations: compiled on CUDA; on the CPU only the symbolic plan
        # (docs/design-notes-envs.md, "Compilation").  Their constant tables are passed
        # in, so the compiled graph holds no cache lookup.
        if self.config.obs_mode == "symbolic":
            self._render = observation.symbolic_obs
            self._render_kwargs = {
                "view": self.config.view_size,
                "constants": observation.symbolic_constants(self.device),
            }
        else:
            self._render = observation.pixel_obs
            self._render_kwargs = {"constants": observation.pixel_constants(64, 12.8, self.device)}
        compile_obs = self.compiled and self.device.type == "cuda"
        self._render_all = (
            CompiledOrEager(self._render, self.device) if compile_obs else self._render
        )
        self._plan = None
        if self.compiled and not compile_obs and self.config.obs_mode == "symbolic":
            self._plan = CompiledOrEager(observation.symbolic_plan, self.device)
        self._state: EnvState | None = None
        # Symbolic observations crop the levels from a padded copy of their grids
        # (observation.padded_classes), rebuilt only for environments whose level changes.
        self._padded: torch.Tensor | None = None
        # Observations on the CPU also use the list of alive enemy slots, and symbolic
        # views keep, for large batches, the per-environment pair tables that
        # observation.symbolic_obs would otherwise rebuild every step (only their constant
        # bytes change).
        self._keep_cpu_extras = self.config.obs_mode == "symbolic" and self.device.type == "cpu"
        self._pair_tables: torch.Tensor | None = None
        self._enemy_slots: EnemySlots | None = None
        # The bank of upcoming levels: two per environment, in rows i and num_envs + i.
        # _bank_next[i] (0 or 1) says which of env i's rows holds its next episode,
        # _bank_count[i] how many are ready (that one, then the other: the episode after).
        # Two deep, so that short episodes rarely force a small batch
        # (docs/design-notes-envs.md, "Level bank").
        self._bank: EnvState | None = None
        self._bank_next: torch.Tensor | None = None
        self._bank_count: torch.Tensor | None = None
        if self.device.type == "cpu":
            malloc.warn_if_mapped_afresh(num_envs * math.prod(self.observation_shape))

    @property
    def state(self) -> EnvState | None:
        """The current episodes of all environments (None before the first reset).

        Assign a whole new state rather than editing a level's ``grid`` or its enemies'
        ``enemy_alive`` in place: the core keeps what it derives from the levels (padded
        grids, the list of alive enemies), as ``EnvState`` keeps its bit masks.
        """
        return self._state

    @state.setter
    def state(self, value: EnvState | None) -> None:
        self._state = value
        self._levels_changed(None)

    def _levels_changed(self, index: torch.Tensor | None) -> None:
        """Refresh what is derived from the levels of environments ``index`` (all if None):
        the padded grids (symbolic views) and the alive enemy slots (on the CPU)."""
        if self._state is None:
            self._padded = self._enemy_slots = None
            return
        if self.config.obs_mode != "symbolic":
            self._padded = None
        elif index is None or self._padded is None:
            self._padded = observation.padded_classes(self._state.grid, self.config.view_size)
        else:
            grids = self._state.grid.index_select(0, index)
            self._padded[index] = observation.padded_classes(grids, self.config.view_size)
        if not self._keep_enemy_slots:
            return
        if index is None or self._enemy_slots is None:
            self._enemy_slots = alive_enemy_slots(self._state)
        else:
            # Drop the enemies of the environments whose level changed, add their new ones:
            # cheaper than recomputing the list (index_select throughout, not boolean
            # indexing, for the same reason).
            old, per_env = self._enemy_slots, self._state.enemy_alive.shape[1]
            changed = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            changed.index_fill_(0, index, True)
            kept = (~changed.index_select(0, old.env)).nonzero().squeeze(1)
            row, slot = self._state.enemy_alive.index_select(0, index).nonzero(as_tuple=True)
            env = index.index_select(0, row)
            self._enemy_slots = EnemySlots(
                env=torch.cat((old.env.index_select(0, kept), env)),
                flat=torch.cat((old.flat.index_select(0, kept), env * per_env + slot)),
            )

    # -- episode starts ----------------------------------------------------------------
    def reset_keys(self, keys: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """(Re)start environments ``index`` (all if None) at episode 0 of the given keys."""
        if index is not None:
            index = as_index(index, self.device)
        episode = torch.zeros_like(keys)
        fresh = initial_states(keys, episode, self.config)
        if self.state is None or index is None:
            self.state = fresh
            self._bank = EnvState.zeros(2 * self.num_envs, self.device)
            self._bank_next = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
            self._bank_count = torch.zeros_like(self._bank_next)
        else:
            self.state.assign(index, fresh)
            self._levels_changed(index)
            self._bank_count[index] = 0
        if index is None:
            self._pending_reset.zero_()
        else:
            self._pending_reset[index] = False

    def _start_next_episode(self, done: torch.Tensor) -> None:
        """Move the environments flagged in ``done`` on to their next level."""
        index = done.nonzero().squeeze(1)
        if index.numel() == 0:
            return
        if not bool((self._bank_count[index] > 0).all()):
            # Some of these used up their bank (short episodes): generate their levels
            # and, in the same batch, every other missing one.
            self._fill_bank()
        slot = self._bank_next[index]
        self.state.assign(index, self._bank.index(slot * self.num_envs + index))
        self._levels_changed(index)
        self._bank_next[index] = 1 - slot
        self._bank_count[index] -= 1
        if 2 * self.num_envs - int(self._bank_count.sum()) >= self.prefetch:
            self._fill_bank()

    def _fill_bank(self) -> None:
        """Generate every level missing from the bank, in one batch."""
        s, n, count = self.state, self.num_envs, self._bank_count
        empty = (count == 0).nonzero().squeeze(1)  # missing their next episode ...
        short = (count < 2).nonzero().squeeze(1)  # ... and the one after it
        envs = torch.cat((empty, short))
        ahead = torch.cat((torch.ones_like(empty), torch.full_like(short, 2)))
        slot = torch.cat((self._bank_next[empty], 1 - self._bank_next[short]))
        levels = initial_states(s.env_key[envs], s.episode[envs] + ahead, self.config)
        self._bank.assign(slot * n + envs, levels)
        count[short] = 2

    # -- saving and restoring ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the environments' future, as tensors (for checkpoints):
        the current episodes, the bank of upcoming levels and the pending resets."""
        if self.state is None:
            raise RuntimeError("state_dict() before reset(): there is no state to save")
        return {
            "state": {f.name: getattr(self.state, f.name) for f in fields(EnvState)},
            "bank": {f.name: getattr(self._bank, f.name) for f in fields(EnvState)},
            "bank_next": self._bank_next,
            "bank_count": self._bank_count,
            "pending_reset": self._pending_reset,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved (copied to this core's device: the core then
        shares no tensor with ``saved``, which may be another live core's state)."""
        names = {f.name for f in fields(EnvState)}
        if set(saved["state"]) != names or saved["state"]["grid"].shape[0] != self.num_envs:
            raise ValueError(
                f"the saved environment state has fields {sorted(saved['state'])} for "
                f"{saved['state'].get('grid', torch.empty(0)).shape[:1]} envs; this core "
                f"expects {sorted(names)} for {self.num_envs} envs (a different "
                "coinrun_mg.envs version or num_envs)"
            )
        dev, n = self.device, self.num_envs

        def copied(tensors: dict[str, torch.Tensor]) -> EnvState:
            return EnvState(**{k: v.to(dev, copy=True) for k, v in tensors.items()})

        self.state = copied(saved["state"])
        if "upcoming" in saved:  # saved with one upcoming level per environment
            self._bank = EnvState.zeros(2 * n, dev)
            self._bank.assign(torch.arange(n, device=dev), copied(saved["upcoming"]))
            self._bank_next = torch.zeros(n, dtype=torch.int64, device=dev)
            self._bank_count = saved["upcoming_ready"].to(dev, dtype=torch.int64, copy=True)
        else:
            self._bank = copied(saved["bank"])
            self._bank_next = saved["bank_next"].to(dev, copy=True)
            self._bank_count = saved["bank_count"].to(dev, copy=True)
        self._pending_reset = saved["pending_reset"].to(dev, copy=True)

    # -- stepping ------------------------------------------------------------------------
    def _physics_alive_enemies(self, s: EnvState, actions, config) -> StepEvents:
        """``physics_step`` walking only the alive enemies of the kept list (the CPU)."""
        return physics_with(
            self._move_agent_step, s, actions, config, self._enemy_slots, self._step_alive_enemies
        )

    def _step_events(self, actions: torch.Tensor) -> StepEvents:
        return self._physics(self.state, actions, self.config)

    # -- observations and infos ---------------------------------------------------------------
    def observe(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Observations of all environments, or of those in ``index`` (int64 ``[K]``)."""
        state, padded = self.state, self._padded
        if index is not None:
            state = state.index(index)
            padded = None if padded is None else padded[index]
        kwargs = dict(self._render_kwargs)
        if padded is not None:
            kwargs["padded"] = padded
        if index is None and self._plan is not None:
            kwargs["plan"] = self._plan(state, kwargs["view"], kwargs["constants"])
        if index is None and self._keep_enemy_slots:
            kwargs["enemy_slots"] = self._enemy_slots
        if index is None and self._keep_cpu_extras:
            if self._pair_tables is None and observation.uses_pair_tables(
                self.num_envs, self.device
            ):
                self._pair_tables = observation.pair_tables(self.num_envs)
            kwargs["tables"] = self._pair_tables
        # The whole batch has a fixed shape: it is the call compiled where enabled.
        return (self._render_all if index is None else self._render)(state, **kwargs)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        if self.config.obs_mode == "symbolic":
            v = self.config.view_size
            return (v, v, observation.SYMBOLIC_CHANNELS)
        return (64, 64, 3)

    def _info(self, events: StepEvents | None) -> dict[str, torch.Tensor]:
        s = self.state
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return {
            "coin_collected": false if events is None else events.coin_collected,
            "reached_end": s.reached_end.clone(),
            "died": false if events is None else events.died,
            "timed_out": false if events is None else events.truncated,
            "coin_randomized": s.coin_randomized.clone(),
            "level_seed": s.level_seed.clone(),
            "agent_x": s.agent_x.clone(),
            "coin_x": s.coin_x.clone(),
            "end_x": s.end_x.clone(),
        }

    def render_frame(self, index: int = 0) -> np.ndarray:
        """A large RGB view of environment ``index`` for people (``render_mode='rgb_array'``)."""
        return observation.human_frame(self.state, index)
