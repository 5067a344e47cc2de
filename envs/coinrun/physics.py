"""CoinRun's physics: pure functions that advance a batched ``EnvState`` by one step.

``physics_step`` moves the agent and the enemies of every environment at once (in place,
no Python loop per environment) and returns the step's ``StepEvents``; the core
(``core.py``) owns the state and decides what to do with the events.

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

from dataclasses import dataclass

import torch

from .config import CoinRunConfig
from .state import (
    AGENT_RX,
    AGENT_RY,
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
    EnemySlots,
    EnvState,
)

# The agent's box is tested a hair inside its sides (procgen's 0.98 margin).  It is less
# than two tiles high and moves under half a tile per sub-step, so a sub-step can only
# run into the column (or row) its leading edge enters: that is all the tests look at.
_SIDE_X = AGENT_RX * 0.98
_SIDE_Y = AGENT_RY * 0.98
_MAX_SUBSTEPS = 6  # int(4 * |v|) for the fastest possible velocity (0.5, 1.5)


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


def step_alive_enemies(s: EnvState, slots: EnemySlots) -> torch.Tensor:
    """:func:`_step_enemies` for the alive slots only (``slots`` lists them, see
    ``state.alive_enemy_slots``), bit for bit: the other slots do not move.

    A batch has about one alive enemy per environment among its many slots, so on the CPU
    gathering those is much cheaper than walking every slot (docs/design-notes-envs.md,
    "Alive enemies").  The enemy tensors are updated in place.
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
    enemy_slots: EnemySlots | None = None,
) -> StepEvents:
    """Advance every environment in ``s`` by one step (in place) and report its events.

    ``actions`` are int64 ``[N]`` in ``[0, 15)``: 0..8 are (left, none, right) x
    (down, none, up); 9..14 stand still, as in procgen.  ``enemy_slots``
    (``state.alive_enemy_slots(s)``, for callers that keep it) walks only the alive
    enemies, with the same result: cheaper on the CPU, but not for ``torch.compile``,
    whose graphs have fixed shapes.
    """
    return physics_with(move_agent_step, s, actions, config, enemy_slots)


def physics_with(
    agent_step, s, actions, config, enemy_slots, walk_alive_enemies=None
) -> StepEvents:
    """:func:`physics_step` with its parts passed in (``CoinRunCore`` passes compiled ones
    on the CPU: the agent's part, and the walk of the alive enemies)."""
    coin, touched_end, on_danger = agent_step(s, actions)
    if enemy_slots is None:
        touched_enemy = _step_enemies(s)
    else:
        touched_enemy = (walk_alive_enemies or step_alive_enemies)(s, enemy_slots)
    return _step_events(s, coin, touched_end, on_danger | touched_enemy, config)


def move_agent_step(s: EnvState, actions: torch.Tensor):
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
