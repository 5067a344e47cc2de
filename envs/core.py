"""The native CoinRun: physics as batched tensor functions and a torch vector env.

``physics_step`` advances an ``EnvState`` by one step for all environments at once and
returns the step's events; ``CoinRunCore`` owns a state on one device, generates levels,
resets finished environments and renders observations.  Tensors stay on the device:
the PPO agent calls ``CoinRunCore.step`` directly, and the Gymnasium facades in
``gym_env.py`` convert to numpy.

Differences from procgen CoinRun (chosen, not accidental):

* Saws and crates never move, so they are tiles rather than entities.  A crate is a
  one-way platform exactly as in procgen (land on it from above while not pressing down).
* The box-versus-grid test checks every tile row (or column) the box's leading edge
  overlaps (procgen: only the four corners), so the agent can never pass through a
  one-tile-high stepping block.
* When ``|vx| == |vy|`` and no direction is pressed, x is resolved first (procgen breaks
  this tie at random); the whole step is deterministic given the level.
* Walking enemies patrol between precomputed bounds (the walls or barriers that would
  turn them), which is what procgen's reflection amounts to for a horizontal walker.
* Colliding with the coin and a danger in the same step counts as collecting the coin.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

import numpy as np
import torch

from . import malloc, render
from .config import AUTORESET_MODES, CoinRunConfig, resolve_device
from .levels import generate_levels, place_coins
from .rng import random_bits
from .state import (
    AGENT_RX,
    AGENT_RY,
    AGENT_START_X,
    AGENT_START_Y,
    AIR_CONTROL,
    COIN_REWARD,
    COLLISION_EPS,
    ENEMY_R,
    GRAVITY,
    GRID_H,
    GRID_W,
    MAX_JUMP,
    MAX_SPEED,
    MIXRATE,
    NUM_ACTIONS,
    EnvState,
    as_index,
)

# The agent's box is tested a hair inside its sides (procgen's 0.98 margin).  It is less
# than two tiles high and moves under half a tile per sub-step, so a sub-step can only
# run into the column (or row) its leading edge enters: that is all the tests look at.
_SIDE_X = AGENT_RX * 0.98
_SIDE_Y = AGENT_RY * 0.98
_MAX_SUBSTEPS = 6  # int(4 * |v|) for the fastest possible velocity (0.5, 1.5)
_LEVEL_SEED_SALT = 0x5EED5EED


@dataclass
class StepEvents:
    """What happened in one step, per environment (all ``[N]`` tensors)."""

    reward: torch.Tensor  # float32
    terminated: torch.Tensor  # bool: coin, death, or the end when end_terminates
    truncated: torch.Tensor  # bool: the step limit was hit
    coin_collected: torch.Tensor  # bool
    died: torch.Tensor  # bool
    touched_end: torch.Tensor  # bool: overlapping the original end tile this step


# --------------------------------------------------------------------------------------
# Physics: pure functions over an EnvState (updated in place, no Python per env).
# Columns are int64 bit masks (bit y = row y), so "is any tile of this column between
# rows r0 and r1 solid" is one gather and a shift.
# --------------------------------------------------------------------------------------


def _floor_index(v: torch.Tensor, size: int) -> torch.Tensor:
    """Tile index of a world coordinate, clamped onto the grid's border (which is wall).

    Every coordinate the physics asks about lies inside the grid (the border walls keep
    the agent at least half a tile in), so truncation is the floor; the clamp only
    guards the index arithmetic.  int32: the compiled CPU physics converts floats to
    int32 with one vector instruction, to int64 without one.
    """
    return v.int().clamp_(0, size - 1)


def _column(bits_flat: torch.Tensor, base: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The bit mask of the column under world x for every environment."""
    # index_select is several times faster than advanced indexing on the CPU.
    return bits_flat.index_select(0, base + _floor_index(x, GRID_W))


def _has_row(column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    return ((column >> row) & 1).bool()


def _has_rows(column: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Whether any of rows ``lo..hi`` (inclusive, at most a few apart) is set."""
    span = (2 << (hi - lo)) - 1
    return ((column >> lo) & span) != 0


def _blend(cond: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``where(cond, new, old)`` for floats; arithmetic is cheaper than where on the CPU."""
    return old + cond * (new - old)


class _Physics:
    """Per-step constants shared by the sub-steps of one ``physics_step``."""

    def __init__(self, s: EnvState):
        self.base = torch.arange(s.num_envs, device=s.device, dtype=torch.int32) * GRID_W
        self.solid = s.solid_bits.view(-1)
        self.crate = s.crate_bits.view(-1)
        self.danger = s.danger_bits.view(-1)

    def columns_under(self, s: EnvState):
        """Solid and crate bits of the (one or two) columns the agent's box spans."""
        left, right = s.agent_x - _SIDE_X, s.agent_x + _SIDE_X
        solid = _column(self.solid, self.base, left) | _column(self.solid, self.base, right)
        crate = _column(self.crate, self.base, left) | _column(self.crate, self.base, right)
        return solid, crate


def _move_x(s: EnvState, ph: _Physics, active, frac, free) -> torch.Tensor:
    """One horizontal sub-step; a blocked move snaps to the tile edge. Returns blocked."""
    dx = s.agent_vx * frac
    nx = s.agent_x + dx
    right = dx > 0
    leading = _column(ph.solid, ph.base, nx + _SIDE_X * (2.0 * right - 1.0))
    lo = _floor_index(s.agent_y - _SIDE_Y, GRID_H)
    hi = _floor_index(s.agent_y + _SIDE_Y, GRID_H)
    blocked = active & (dx != 0) & _has_rows(leading, lo, hi)
    snapped = _blend(right, (nx + AGENT_RX).floor() - AGENT_RX, (nx - AGENT_RX).ceil() + AGENT_RX)
    s.agent_x = _blend(active, _blend(blocked, snapped, nx), s.agent_x)
    free += active & ~blocked
    return blocked


def _move_y(s: EnvState, under, active, frac, free, last_y, pressing_down) -> torch.Tensor:
    """One vertical sub-step against walls and crate tops. Returns blocked.

    ``under`` holds the solid and crate bits of the columns the agent spans (they only
    change when x does, so the caller refreshes them after each horizontal sub-step).
    """
    solid, crate = under
    dy = s.agent_vy * frac
    ny = s.agent_y + dy
    up = dy > 0
    leading = _floor_index(ny + _SIDE_Y * (2.0 * up - 1.0), GRID_H)
    hit = active & (dy != 0) & _has_row(solid, leading)
    snapped = _blend(up, (ny + AGENT_RY).floor() - AGENT_RY, (ny - AGENT_RY).ceil() + AGENT_RY)
    ny = _blend(hit, snapped, ny)

    # Crates hold the agent only when it falls onto them from above without pressing
    # down, judged from where it stood at the start of the step (procgen's rule).
    feet = (ny - AGENT_RY + COLLISION_EPS).floor()
    crate_top = feet + 1.0
    land = (
        active
        & ~hit
        & (s.agent_vy < 0)
        & ~pressing_down
        & _has_row(crate, _floor_index(feet, GRID_H))
        & (last_y >= crate_top + AGENT_RY)
    )
    ny = _blend(land, crate_top + AGENT_RY, ny)
    s.agent_vy = s.agent_vy * ~land
    s.on_crate |= land
    s.agent_y = _blend(active, ny, s.agent_y)
    blocked = hit | land
    free += active & ~blocked
    return blocked


def _move_agent(s: EnvState, ph: _Physics, under, action_vx, action_vy) -> None:
    """Sub-stepped box-versus-grid movement (at least 4 sub-steps, more when fast)."""
    speed = torch.sqrt(s.agent_vx * s.agent_vx + s.agent_vy * s.agent_vy)
    substeps = (4.0 * speed).floor().clamp(min=4.0)
    frac = 1.0 / substeps
    # Pressing a horizontal direction resolves x first, pressing up/down resolves y
    # first (procgen's rule for moving through tight gaps); otherwise the faster axis.
    x_first = (action_vy == 0) & ((action_vx != 0) | (s.agent_vx.abs() >= s.agent_vy.abs()))
    y_first = ~x_first
    last_y = s.agent_y.clone()
    pressing_down = action_vy < 0
    free_x = torch.zeros_like(s.agent_x)
    free_y = torch.zeros_like(s.agent_x)
    stopped = torch.zeros_like(x_first)
    for step in range(_MAX_SUBSTEPS):
        active = (step < substeps) & ~stopped
        blocked_y = _move_y(s, under, active & y_first, frac, free_y, last_y, pressing_down)
        blocked_x = _move_x(s, ph, active, frac, free_x)
        under = ph.columns_under(s)
        blocked_y |= _move_y(s, under, active & x_first, frac, free_y, last_y, pressing_down)
        stopped |= blocked_x & blocked_y
    # A blocked sub-step cancels its share of the velocity, as in procgen.
    s.agent_vx = s.agent_vx * free_x / substeps
    s.agent_vy = s.agent_vy * free_y / substeps


def _walk(x, vx, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """Walkers move at constant speed and turn around at the ends of their patrol;
    returns their new ``x`` and ``vx``.  Unused slots (lo = hi = vx = 0) stay at 0."""
    x = x + vx
    over = x > hi
    under = x < lo
    turn = over | under
    x = _blend(over, 2 * hi - x, _blend(under, 2 * lo - x, x))
    return x.clamp(min=lo, max=hi), vx * (1 - 2 * turn.float())


def _touching(dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Whether an enemy whose centre is ``(dx, dy)`` from the agent's touches its box."""
    return (dx.abs() < AGENT_RX + ENEMY_R - COLLISION_EPS) & (
        dy.abs() < AGENT_RY + ENEMY_R - COLLISION_EPS
    )


def _step_enemies(s: EnvState) -> torch.Tensor:
    """Walk every enemy slot; returns whether an alive enemy touches the agent."""
    s.enemy_x, s.enemy_vx = _walk(s.enemy_x, s.enemy_vx, s.enemy_lo, s.enemy_hi)
    near = _touching(s.enemy_x - s.agent_x[:, None], s.enemy_y - s.agent_y[:, None])
    return (s.enemy_alive & near).any(dim=1)


def _step_alive_enemies(s: EnvState, slots: render.EnemySlots) -> torch.Tensor:
    """:func:`_step_enemies` for the alive slots only (``slots`` lists them, see
    ``render.alive_enemy_slots``), bit for bit: the other slots do not move.

    A batch has about one alive enemy per environment among its 35 slots, so on the CPU
    gathering those (15,000 at 16,384 envs) costs 0.6 ms eagerly, where walking all
    573,440 slots costs 3.6 ms eagerly and 0.9 of the compiled physics' 2.3 ms (2-core
    Intel machine, README).  The enemy tensors are updated in place.
    """
    env, flat = slots
    x, vx = s.enemy_x.view(-1), s.enemy_vx.view(-1)
    lo, hi = s.enemy_lo.view(-1).index_select(0, flat), s.enemy_hi.view(-1).index_select(0, flat)
    new_x, new_vx = _walk(x.index_select(0, flat), vx.index_select(0, flat), lo, hi)
    x.index_copy_(0, flat, new_x)
    vx.index_copy_(0, flat, new_vx)
    near = _touching(
        new_x - s.agent_x.index_select(0, env),
        s.enemy_y.view(-1).index_select(0, flat) - s.agent_y.index_select(0, env),
    )
    # Counted with index_add rather than set through env[near]: an environment can have
    # several enemies, and this keeps the shapes fixed for torch.compile.
    touched = torch.zeros(s.num_envs, dtype=torch.int32, device=s.device)
    return touched.index_add_(0, env, near.int()) > 0


def _overlaps_tile(s: EnvState, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """Whether the agent's box overlaps tile ``(tx, ty)`` by more than the contact margin."""
    return ((s.agent_x - (tx + 0.5)).abs() < AGENT_RX + 0.5 - COLLISION_EPS) & (
        (s.agent_y - (ty + 0.5)).abs() < AGENT_RY + 0.5 - COLLISION_EPS
    )


def _on_danger_tile(s: EnvState, ph: _Physics) -> torch.Tensor:
    """Lava or saw tiles under the agent's box."""
    lo = _floor_index(s.agent_y - AGENT_RY + COLLISION_EPS, GRID_H)
    hi = _floor_index(s.agent_y + AGENT_RY - COLLISION_EPS, GRID_H)
    danger = _column(ph.danger, ph.base, s.agent_x - AGENT_RX + COLLISION_EPS) | _column(
        ph.danger, ph.base, s.agent_x + AGENT_RX - COLLISION_EPS
    )
    return _has_rows(danger, lo, hi)


def physics_step(
    s: EnvState,
    actions: torch.Tensor,
    config: CoinRunConfig,
    enemy_slots: render.EnemySlots | None = None,
) -> StepEvents:
    """Advance every environment in ``s`` by one step (in place) and report its events.

    ``actions`` are int64 ``[N]`` in ``[0, 15)``: 0..8 are (left, none, right) x
    (down, none, up); 9..14 stand still, as in procgen.  ``enemy_slots``
    (``render.alive_enemy_slots(s)``, for callers that keep it) walks only the alive
    enemies, with the same result: cheaper on the CPU, but not for ``torch.compile``,
    whose graphs have fixed shapes.
    """
    return _physics_with(_move_agent_step, s, actions, config, enemy_slots)


def _physics_with(
    move_agent_step, s, actions, config, enemy_slots, step_alive_enemies=None
) -> StepEvents:
    """:func:`physics_step` with its parts passed in (``CoinRunCore`` passes compiled ones
    on the CPU: the agent's part, and the walk of the alive enemies)."""
    coin, touched_end, on_danger = move_agent_step(s, actions)
    if enemy_slots is None:
        touched_enemy = _step_enemies(s)
    else:
        touched_enemy = (step_alive_enemies or _step_alive_enemies)(s, enemy_slots)
    return _step_events(s, coin, touched_end, on_danger | touched_enemy, config)


def _move_agent_step(s: EnvState, actions: torch.Tensor):
    """The agent's part of :func:`physics_step`: controls, movement, and what it now
    overlaps (the coin, the original end, lava or saw tiles); counts the step."""
    ph = _Physics(s)
    move = torch.where(actions >= 9, 4, actions)
    action_vx = move // 3 - 1
    action_vy = move % 3 - 1

    # Support: ground under either foot (or the crate landed on last step) while at rest.
    under = ph.columns_under(s)
    below = _floor_index(s.agent_y - (AGENT_RY + 0.01), GRID_H)
    supported = (s.on_crate | _has_row(under[0], below)) & (s.agent_vy == 0)
    s.on_crate = torch.zeros_like(s.on_crate)
    jump = (action_vy > 0) & supported
    action_vy = action_vy * ~((action_vy > 0) & ~supported)
    s.facing_right = (action_vx > 0) | (s.facing_right & (action_vx == 0))

    # Velocity: blend toward the target speed (weakly in the air); jumping sets vy.
    mix = MIXRATE * AIR_CONTROL + supported * (MIXRATE - MIXRATE * AIR_CONTROL)
    vx = (1 - mix) * s.agent_vx + mix * MAX_SPEED * action_vx
    s.agent_vx = vx * (vx.abs() >= mix * MAX_SPEED)
    vy = s.agent_vy + supported * (0.2 * action_vy)
    vy = (vy - GRAVITY).clamp(-MAX_JUMP, MAX_JUMP)
    s.agent_vy = _blend(jump, torch.full_like(vy, MAX_JUMP), vy)

    _move_agent(s, ph, under, action_vx, action_vy)

    coin = _overlaps_tile(s, s.coin_x, s.coin_y)
    touched_end = _overlaps_tile(s, s.end_x, s.end_y)
    s.reached_end |= touched_end
    s.steps += 1
    return coin, touched_end, _on_danger_tile(s, ph)


def _step_events(s: EnvState, coin, touched_end, danger, config: CoinRunConfig) -> StepEvents:
    """The step's events once the agent and the enemies have moved."""
    died = danger & ~coin
    terminated = coin | died
    if config.end_terminates:
        terminated = terminated | touched_end
    truncated = (s.steps >= config.max_episode_steps) & ~terminated
    return StepEvents(
        reward=coin * COIN_REWARD,
        terminated=terminated,
        truncated=truncated,
        coin_collected=coin,
        died=died,
        touched_end=touched_end,
    )


# --------------------------------------------------------------------------------------
# Episode starts
# --------------------------------------------------------------------------------------


def level_seeds_for(env_key: torch.Tensor, episode: torch.Tensor, config: CoinRunConfig):
    """The level seed of each environment's ``episode``-th episode (procgen's seed range).

    A pure function of the environment's key and episode number, so an environment's
    sequence of levels does not depend on what the other environments do.
    """
    bits = random_bits(env_key ^ _LEVEL_SEED_SALT, episode)
    if config.num_levels == 0:
        return bits & 0x7FFFFFFF
    return config.start_level + ((bits * config.num_levels) >> 32)


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


# --------------------------------------------------------------------------------------
# Compilation.  Eager, one step is about 2,000 small tensor operations: on a GPU the
# kernel launches, not the arithmetic, bound the step (18.7 ms at 65,536 envs on an
# H100).  torch.compile fuses the physics and the observation into a few kernels (1.8 ms
# there).  On the CPU the physics is compiled (5x faster than eager at 16,384 envs,
# bit for bit the same; from 8,192 envs in two graphs, see CoinRunCore) and, of
# the symbolic observation, only its per-environment arithmetic (render.symbolic_plan):
# the compiled observation gathers ran 10-35x slower than the eager ones.
# --------------------------------------------------------------------------------------

# Inductor caps a fused kernel at 64 graph nodes.  The physics graph has well over a
# thousand, so on the CPU it was cut into loops that handed dozens of bool buffers per
# environment to each other, and those partial-vector bool stores cost as much as the
# arithmetic.  Without the cap the compiled CPU physics takes 6.8 instead of 11.9 ms at
# 16,384 envs, bit for bit the same (benchmarks/step_profile.py).  CUDA keeps inductor's
# defaults, the setting its figures were measured with.
#
# Inductor also checks every gathered index against its tensor's size (one vector
# compare and branch per gather, about 30 per environment and step).  The physics
# clamps each index onto the grid first (_floor_index), so the checks cannot fire;
# without them the compiled CPU physics took 5.8-7.0 instead of 7.9-8.6 ms at 16,384
# envs (together with int32 indices; three interleaved runs).  Eager code still raises.
_CPU_COMPILE_OPTIONS = {"max_fusion_size": 4096, "assert_indirect_indexing": False}

# Compiled CPU batches from this size walk only the alive enemies (see CoinRunCore).
_COMPILED_ALIVE_WALK_FROM = 8192

# That walk is compiled with the enemy count symbolic, one graph for every count.  With
# inductor's vector code its C++ did not build on torch 2.13 (a gathered index used
# outside the scope that declares it); scalar code builds, and for 15,000 enemies runs
# in 0.30 instead of 0.64 ms eagerly (2-core Intel machine, README).
_CPU_DYNAMIC_OPTIONS = {"assert_indirect_indexing": False, "cpp.simdlen": 1}

COMPILE_CHOICES = ("auto", True, False)
# The same choices as command-line words (``--compile-env``, the benchmarks' ``--compile``).
COMPILE_WORDS = {"auto": "auto", "on": True, "off": False}


def resolve_compile(compile: bool | str, device: torch.device) -> bool:
    """``"auto"`` compiles on CUDA only; ``True`` / ``False`` force it on or off."""
    if compile == "auto" and not isinstance(compile, bool):
        return device.type == "cuda"
    if isinstance(compile, bool):
        return compile
    raise ValueError(f"compile={compile!r} is invalid; accepted values are {COMPILE_CHOICES}")


@cache
def _compiled(fn, device_type: str, dynamic: bool = False):
    """One ``torch.compile`` wrapper per function and device type, shared by every core
    in the process.

    Static shapes: each batch size compiles once (torch keeps up to 8 per function and
    process, then runs the function eagerly).  Kernels compiled with the batch size
    symbolic ran 2-16x slower on an H100 (``benchmarks/throughput.py``, pixels worst).
    ``dynamic`` is for the CPU walk of the alive enemies, whose number changes with
    every new level (see ``_CPU_DYNAMIC_OPTIONS``).
    """
    if dynamic:
        return torch.compile(fn, dynamic=True, options=_CPU_DYNAMIC_OPTIONS)
    options = _CPU_COMPILE_OPTIONS if device_type == "cpu" else None
    return torch.compile(fn, dynamic=False, options=options)


class _CompiledOrEager:
    """``fn`` through ``torch.compile``, or eagerly if compiling it fails.

    Compiling needs a C++ compiler on the CPU and Triton on a GPU; without them the first
    call fails.  The env then warns once and carries on eagerly (same results, slower)
    instead of failing a user who asked for nothing but the default.  Only a failure
    before the first successful call falls back: compile errors happen there (one core,
    one batch size), and a later error is a real one.
    """

    def __init__(self, fn, device: torch.device, dynamic: bool = False):
        self.fn = fn
        self.compiled = _compiled(fn, device.type, dynamic)
        self.working = None  # unknown until the first call

    def __call__(self, *args, **kwargs):
        if self.working is False:
            return self.fn(*args, **kwargs)
        if self.working:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure; eager re-raises real errors
            self.working = False
            warnings.warn(
                f"torch.compile of {self.fn.__name__} failed ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly. "
                "Pass compile=False to skip compiling.",
                RuntimeWarning,
                stacklevel=3,
            )
            return self.fn(*args, **kwargs)
        self.working = True
        return out


_warned_about_malloc = False


def _warn_if_observations_are_mapped_afresh(obs_bytes: int) -> None:
    """Warn once per process when each step's CPU observations are big enough for glibc
    to map and zero-fill them anew every step (see ``malloc.py``)."""
    global _warned_about_malloc
    if _warned_about_malloc or not malloc.maps_afresh(obs_bytes):
        return
    _warned_about_malloc = True
    warnings.warn(
        f"each step's observations take {obs_bytes / 2**20:.1f} MiB, which glibc's malloc "
        "maps and zero-fills afresh every step (about a third of a pixel step at 4,096 "
        f"envs); {malloc.remedy(obs_bytes)}",
        RuntimeWarning,
        stacklevel=3,
    )


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


class CoinRunCore:
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
    (on the CPU only the symbolic observation's per-environment arithmetic, and from 8,192
    envs the physics as two graphs: the agent's part, and a walk of the alive enemies
    only) through ``torch.compile``; ``"auto"`` compiles on CUDA only.  The first
    step then takes a while (about a minute; torch caches the result on disk for later
    processes).  Compiled CPU steps are bit-identical to eager ones.  Compiled CUDA
    kernels fuse multiply-adds, so positions can differ from eager / CPU ones in the last
    bit (about 1e-7) and trajectories drift apart over time; a compiled CUDA run is
    still reproducible on its own: same seed, same device, same result.
    """

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
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid; it must be an int >= 1")
        if autoreset not in AUTORESET_MODES:
            raise ValueError(
                f"autoreset={autoreset!r} is invalid; accepted values are {AUTORESET_MODES}"
            )
        self.num_envs = num_envs
        self.config = config if config is not None else CoinRunConfig()
        self.device = resolve_device(device)
        self.compiled = resolve_compile(compile, self.device)
        # On the CPU the core keeps the list of alive enemies (self._enemy_slots, updated
        # when levels change) and the physics walks only those; compiled, the agent's part
        # and that walk (its size symbolic) are two graphs.  A second graph call costs
        # more than the one graph's walk over all slots in small batches, so below 8,192
        # envs compiled cores keep the one graph, as a GPU does (median steps/s, one graph
        # vs two: 64 envs 150k vs 124k, 1,024 786k vs 771k, 4,096 1.30M vs 1.32M, 8,192
        # 1.74M vs 1.86M; README).
        self._keep_enemy_slots = self.device.type == "cpu"
        walk_alive = self._keep_enemy_slots and (
            not self.compiled or num_envs >= _COMPILED_ALIVE_WALK_FROM
        )
        if walk_alive:
            self._move_agent_step = _move_agent_step
            self._step_alive_enemies = _step_alive_enemies
            if self.compiled:
                self._move_agent_step = _CompiledOrEager(_move_agent_step, self.device)
                self._step_alive_enemies = _CompiledOrEager(
                    _step_alive_enemies, self.device, dynamic=True
                )
            self._physics = self._physics_alive_enemies
        else:
            self._physics = (
                _CompiledOrEager(physics_step, self.device) if self.compiled else physics_step
            )
        # Observations: compiled on CUDA; on the CPU only the symbolic plan (see the note
        # above ``resolve_compile``).  Their constant tables are passed in, so the
        # compiled graph holds no cache lookup.
        if self.config.obs_mode == "symbolic":
            self._render = render.symbolic_obs
            self._render_kwargs = {
                "view": self.config.view_size,
                "constants": render.symbolic_constants(self.device),
            }
        else:
            self._render = render.pixel_obs
            self._render_kwargs = {"constants": render.pixel_constants(64, 12.8, self.device)}
        compile_obs = self.compiled and self.device.type == "cuda"
        self._render_all = (
            _CompiledOrEager(self._render, self.device) if compile_obs else self._render
        )
        self._plan = None
        if self.compiled and not compile_obs and self.config.obs_mode == "symbolic":
            self._plan = _CompiledOrEager(render.symbolic_plan, self.device)
        self.autoreset = autoreset
        self.check_actions = check_actions
        # Generating a batch of levels costs about 1,900 small tensor ops whatever its size
        # (on a GPU, about that many kernel launches), then little per level: fewer, larger
        # batches are cheaper.  A quarter of the envs: with a trained agent on 512 CPU envs
        # (11 episodes ending per step) the rollout ran 22% faster than with 1/16.
        self.prefetch = max(1, num_envs // 4) if prefetch is None else prefetch
        self._state: EnvState | None = None
        # Symbolic observations crop the levels from a padded copy of their grids
        # (render.padded_classes), rebuilt here only for environments whose level changes.
        self._padded: torch.Tensor | None = None
        # Observations on the CPU also use the list of alive enemy slots, and symbolic
        # views keep, for large batches, the per-environment pair tables that
        # render.symbolic_obs would otherwise rebuild every step (only their constant
        # bytes change).
        self._keep_cpu_extras = self.config.obs_mode == "symbolic" and self.device.type == "cpu"
        self._pair_tables: torch.Tensor | None = None
        self._enemy_slots: render.EnemySlots | None = None
        # The bank of upcoming levels: two per environment, in rows i and num_envs + i.
        # _bank_next[i] (0 or 1) says which of env i's rows holds its next episode,
        # _bank_count[i] how many are ready (that one, then the other: the episode after).
        # Two deep, because a batch costs about 1,900 tensor operations whatever its size:
        # one deep, random agents at 16,384 CPU envs forced a small batch every ~40 steps
        # (an environment ended twice between batches), two deep every ~200 (batches
        # counted over 400 compiled steps).
        self._bank: EnvState | None = None
        self._bank_next: torch.Tensor | None = None
        self._bank_count: torch.Tensor | None = None
        self._pending_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        if self.device.type == "cpu":
            _warn_if_observations_are_mapped_afresh(num_envs * math.prod(self.observation_shape))

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
            self._padded = render.padded_classes(self._state.grid, self.config.view_size)
        else:
            grids = self._state.grid.index_select(0, index)
            self._padded[index] = render.padded_classes(grids, self.config.view_size)
        if not self._keep_enemy_slots:
            return
        if index is None or self._enemy_slots is None:
            self._enemy_slots = render.alive_enemy_slots(self._state)
        else:
            # Drop the enemies of the environments whose level changed, add their new ones:
            # about 0.3 ms at 16,384 envs with 9 new levels, against 1.1 ms to recompute
            # the list (index_select throughout: boolean indexing alone took 0.2 ms).
            old, per_env = self._enemy_slots, self._state.enemy_alive.shape[1]
            changed = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            changed.index_fill_(0, index, True)
            kept = (~changed.index_select(0, old.env)).nonzero().squeeze(1)
            row, slot = self._state.enemy_alive.index_select(0, index).nonzero(as_tuple=True)
            env = index.index_select(0, row)
            self._enemy_slots = render.EnemySlots(
                env=torch.cat((old.env.index_select(0, kept), env)),
                flat=torch.cat((old.flat.index_select(0, kept), env * per_env + slot)),
            )

    # -- episode starts ----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Start every environment afresh; environment ``i`` gets the seed key ``seed + i``."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={seed!r} is invalid; it must be an int >= 0 or None")
        keys = int(seed) + torch.arange(self.num_envs, device=self.device)
        self.reset_keys(keys)
        return self.observe(), self._info(None)

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

    def start_next_episodes(self, done: torch.Tensor | None = None) -> None:
        """Move environments on to the next level of their sequence (no new seed).

        ``done`` (bool ``[N]``) picks the environments, all of them when None; with
        ``autoreset="disabled"`` this is how a caller restarts ended episodes itself
        (the SB3 adapter does, to return each terminal observation before the reset).
        """
        if done is None:
            done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._pending_reset = self._pending_reset & ~done  # not in place: may be shared
        self._start_next_episode(done)

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
        return _physics_with(
            self._move_agent_step, s, actions, config, self._enemy_slots, self._step_alive_enemies
        )

    def step(self, actions: torch.Tensor):
        """Step all environments; returns ``obs, reward, terminated, truncated, info``."""
        if self.state is None:
            raise RuntimeError("step() was called before reset(); call reset(seed=...) first")
        actions = self._validate_actions(actions)
        if self.autoreset == "disabled" and bool(self._pending_reset.any()):
            raise RuntimeError(
                "step() was called on an environment whose episode has ended; call reset() first"
            )
        restarting = self._pending_reset if self.autoreset == "next_step" else None

        events = self._physics(self.state, actions, self.config)
        if restarting is not None:
            # Gymnasium's NEXT_STEP: this call only starts the new episode.
            for name in ("reward", "terminated", "truncated", "coin_collected", "died"):
                value = getattr(events, name)
                setattr(events, name, torch.where(restarting, torch.zeros_like(value), value))
        done = events.terminated | events.truncated
        info = self._info(events)

        if self.autoreset == "same_step":
            self._start_next_episode(done)
        elif self.autoreset == "next_step":
            self._start_next_episode(restarting)
            self._pending_reset = done
            if bool(restarting.any()):
                info = self._merge_restart_info(info, restarting)
        else:
            self._pending_reset = done
        return self.observe(), events.reward, events.terminated, events.truncated, info

    def _validate_actions(self, actions) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            actions = torch.as_tensor(np.asarray(actions), device=self.device)
        if actions.shape != (self.num_envs,):
            raise ValueError(
                f"actions have shape {tuple(actions.shape)}; expected ({self.num_envs},) "
                f"integers in [0, {NUM_ACTIONS})"
            )
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise ValueError(
                f"actions have dtype {actions.dtype}; expected integers in [0, {NUM_ACTIONS})"
            )
        actions = actions.to(device=self.device, dtype=torch.int64)
        if self.check_actions and bool(((actions < 0) | (actions >= NUM_ACTIONS)).any()):
            bad = actions[(actions < 0) | (actions >= NUM_ACTIONS)][0].item()
            raise ValueError(
                f"action {bad} is out of range; actions must be integers in [0, {NUM_ACTIONS})"
            )
        return actions

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
            if self._pair_tables is None and render.uses_pair_tables(self.num_envs, self.device):
                self._pair_tables = render.pair_tables(self.num_envs)
            kwargs["tables"] = self._pair_tables
        # The whole batch has a fixed shape: it is the call compiled where enabled.
        return (self._render_all if index is None else self._render)(state, **kwargs)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        if self.config.obs_mode == "symbolic":
            v = self.config.view_size
            return (v, v, render.SYMBOLIC_CHANNELS)
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

    def _merge_restart_info(self, info, restarting) -> dict[str, torch.Tensor]:
        """Infos of restarted environments describe their new episode's first state."""
        fresh = self._info(None)
        return {k: torch.where(restarting, fresh[k], v) for k, v in info.items()}

    def render_frame(self, index: int = 0) -> np.ndarray:
        """A large RGB view of environment ``index`` for people (``render_mode='rgb_array'``)."""
        return render.human_frame(self.state, index)
