"""Stock procgen CoinRun states as the native env's state, for its symbolic observations.

``coinrun_mg/ProcgenCoinRun-v0`` with ``obs_mode="symbolic"`` draws the native env's
observation (:func:`.observation.symbolic_obs`, the one implementation) from procgen's
state: the level is converted into native tile codes when an episode starts, and the
agent and the walking enemies are read from the state bytes after every step.
:func:`native_state` converts whole states (with what the native physics needs besides,
such as the enemies' patrol bounds) so that the same situation can be played natively.

Conventions, procgen's against the native env's (``state.py``); checked on real states
by ``tests/test_procgen_symbolic.py``:

* Axes: procgen's cells are ``y * 64 + x`` with ``y = 0`` the bottom row and entity
  ``y`` grows upward, as in the native ``grid[x, y]``; both measure in tiles.
* Entities: ``x, y`` is the centre of a box of half-extents ``rx, ry``, as the native
  ``agent_x, agent_y``; the player's box is 0.5 x 0.5787 in both (AGENT_RX, AGENT_RY).
* Velocities: ``vx, vy`` are tiles per step in both (MAX_SPEED 0.5, MAX_JUMP 1.5).
* Cells: WALL_MID 15 -> WALL, WALL_TOP 16 -> WALL_TOP, empty 100 -> EMPTY, the enemies'
  barrier 19 -> BARRIER, LAVA_MID 17 -> LAVA, LAVA_TOP 18 -> LAVA_TOP, the coin 1 ->
  EMPTY with ``coin_x, coin_y`` at its cell (the native coin is not a tile).
* Saws (entity types 2, 3) and crates (20) are procgen entities of half-size 0.5 centred
  on a tile, which never move; natively they are the SAW and CRATE tiles of that cell.
* Walking enemies (types 5, 6, 7) become the native enemy slots at their centres (the
  symbolic view marks the tile holding the centre); their ``vx`` is kept.
* Every other entity (procgen's particles, type 59) is drawn only: ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from . import observation
from . import procgen_state as ps
from .state import (
    BARRIER,
    CRATE,
    EMPTY,
    ENEMY_R,
    GRID_H,
    GRID_W,
    LAVA,
    LAVA_TOP,
    MAX_ENEMIES,
    NUM_SOLID,
    SAW,
    WALL,
    WALL_TOP,
    EnvState,
)

_UNKNOWN = 255
# procgen cell code -> native tile code (_UNKNOWN: a code CoinRun's cells never hold).
_CELL_TO_TILE = np.full(ps.EMPTY + 1, _UNKNOWN, dtype=np.uint8)
for _cell, _tile in (
    (ps.WALL, WALL),
    (ps.WALL_TOP, WALL_TOP),
    (ps.EMPTY, EMPTY),
    (ps.BARRIER, BARRIER),
    (ps.LAVA, LAVA),
    (ps.LAVA_TOP, LAVA_TOP),
    (ps.COIN, EMPTY),  # the coin is not a native tile: coin_x, coin_y
):
    _CELL_TO_TILE[_cell] = _tile
SAW_TYPES = (ps.SAW, ps.SAW2)
ENEMY_TYPES = (ps.ENEMY, ps.ENEMY1, ps.ENEMY2)
assert tuple(range(ps.ENEMY, ps.ENEMY + 3)) == ENEMY_TYPES  # native_dynamics tests a range
# Entities that are native tiles: procgen's entity type -> the tile of the cell they sit on.
_ENTITY_TILES = {ps.SAW: SAW, ps.SAW2: SAW, ps.CRATE: CRATE}


class NativeLevel(NamedTuple):
    """A level's fixed part in native terms."""

    grid: np.ndarray  # uint8 [GRID_W, GRID_H] native tile codes, x-major, y = 0 at the bottom
    coin_x: int
    coin_y: int


class NativeDynamics(NamedTuple):
    """The moving part of a state in native terms."""

    agent: tuple[float, float, float, float]  # x, y, vx, vy (float32 values)
    enemy_x: np.ndarray  # float32 [K]: the walking enemies' centres, in procgen's order
    enemy_y: np.ndarray
    enemy_vx: np.ndarray


def _refuse(problem: str) -> ValueError:
    return ps.refusal(ps.GAME_NAME, problem)


def native_level(state: ps.CoinRunState) -> NativeLevel:
    """The native tiles and coin cell of the level in a parsed procgen state."""
    cells = state.grid  # [x, y], procgen's codes
    if (cells < 0).any() or (cells > ps.EMPTY).any():
        raise _refuse(f"cell codes outside 0..{ps.EMPTY}: {np.unique(cells).tolist()}")
    grid = _CELL_TO_TILE[cells]
    if (grid == _UNKNOWN).any():
        raise _refuse(f"cell codes CoinRun does not use: {np.unique(cells[grid == _UNKNOWN])}")
    coin = np.argwhere(cells == ps.COIN)
    if len(coin) != 1:
        raise _refuse(f"{len(coin)} coin cells, expected exactly 1")
    e = state.entities
    for kind, tile in _ENTITY_TILES.items():
        pick = e["type"] == kind
        # A saw or crate is centred on its cell: the cell holding its centre.
        xs = np.floor(e["x"][pick]).astype(np.int64)
        ys = np.floor(e["y"][pick]).astype(np.int64)
        if ((xs < 0) | (xs >= GRID_W) | (ys < 0) | (ys >= GRID_H)).any():
            raise _refuse(f"an entity of type {kind} lies outside the {GRID_W} x {GRID_H} grid")
        grid[xs, ys] = tile
    return NativeLevel(np.ascontiguousarray(grid), int(coin[0, 0]), int(coin[0, 1]))


def native_dynamics(entities: np.ndarray) -> NativeDynamics:
    """The agent and the walking enemies of a state's entity records (player first):
    :attr:`.procgen_state.CoinRunState.entities` or :func:`.procgen_state.entity_records`."""
    player = entities[0]
    kind = entities["type"]
    enemies = entities[(kind >= ps.ENEMY) & (kind <= ps.ENEMY2)]  # (np.isin costs 10x more)
    return NativeDynamics(
        (float(player["x"]), float(player["y"]), float(player["vx"]), float(player["vy"])),
        enemies["x"].astype(np.float32),
        enemies["y"].astype(np.float32),
        enemies["vx"].astype(np.float32),
    )


def patrol_bounds(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """The native patrol bounds ``(lo, hi)`` of enemies centred at ``x, y`` on a native
    ``grid``: between the nearest wall or barrier left and right in the enemy's row, the
    rule of the native generator (``levels._spawn_enemies``)."""
    cols = np.floor(x).astype(np.int64)
    rows = np.floor(y).astype(np.int64)
    line = grid[:, rows].T  # [K, W]
    blocks = (line < NUM_SOLID) | (line == BARRIER)
    xs = np.arange(grid.shape[0])
    left = np.where(blocks & (xs < cols[:, None]), xs, -1).max(axis=1, initial=-1)
    right = np.where(blocks & (xs > cols[:, None]), xs, grid.shape[0]).min(
        axis=1, initial=grid.shape[0]
    )
    lo = (left + 1).astype(np.float32) + np.float32(ENEMY_R)
    hi = right.astype(np.float32) - np.float32(ENEMY_R)
    return lo, hi


def native_state(
    states: Sequence[ps.CoinRunState], ends: Sequence[tuple[int, int]] | None = None
) -> EnvState:
    """A native CPU :class:`~.state.EnvState` of the situations in parsed procgen states.

    Everything the native physics and observations read: tiles, coin, agent, enemies
    with their patrol bounds (:func:`patrol_bounds`), ``on_crate`` and ``facing_right``
    (procgen's ``is_on_crate`` / ``facing_right``), ``steps`` (``cur_time``) and the
    level seed.  ``ends`` are the original end cells (default: the coin cells, a level
    whose coin was not moved).  Theme 0 (the native palette's; pixels only).
    """
    n = len(states)
    levels = [native_level(st) for st in states]
    moving = [native_dynamics(st.entities) for st in states]
    width = max([MAX_ENEMIES] + [len(d.enemy_x) for d in moving])
    s = EnvState.zeros(n, "cpu")
    for name in ("enemy_x", "enemy_y", "enemy_vx", "enemy_lo", "enemy_hi"):
        setattr(s, name, torch.zeros(n, width))
    s.enemy_alive = torch.zeros(n, width, dtype=torch.bool)
    for i, (st, level, d) in enumerate(zip(states, levels, moving)):
        s.grid[i] = torch.from_numpy(level.grid)
        s.coin_x[i], s.coin_y[i] = level.coin_x, level.coin_y
        end = (level.coin_x, level.coin_y) if ends is None else ends[i]
        s.end_x[i], s.end_y[i] = int(end[0]), int(end[1])
        s.coin_randomized[i] = (s.end_x[i] != s.coin_x[i]) | (s.end_y[i] != s.coin_y[i])
        s.level_seed[i] = st.level_seed
        s.agent_x[i], s.agent_y[i], s.agent_vx[i], s.agent_vy[i] = d.agent
        s.on_crate[i] = bool(st.tail["is_on_crate"])
        s.facing_right[i] = bool(st.tail["facing_right"])
        s.steps[i] = int(st.game["cur_time"])
        k = len(d.enemy_x)
        lo, hi = patrol_bounds(level.grid, d.enemy_x, d.enemy_y)
        for name, values in (
            ("enemy_x", d.enemy_x),
            ("enemy_y", d.enemy_y),
            ("enemy_vx", d.enemy_vx),
            ("enemy_lo", lo),
            ("enemy_hi", hi),
        ):
            getattr(s, name)[i, :k] = torch.from_numpy(values)
        s.enemy_alive[i, :k] = True
    s.update_bits()
    return s


class SymbolicView:
    """The native symbolic observations of ``num_envs`` procgen environments.

    Holds a native :class:`~.state.EnvState` with the fields :func:`.observation.
    symbolic_obs` reads (tiles, coin, agent, enemies; the rest stay zero), and the
    padded tile classes it crops from.  :meth:`set_level` installs a new episode's level
    (its grid is converted once), :meth:`set_dynamics` the agent and enemies read after
    a step, and :meth:`observe` draws every environment's view.
    """

    def __init__(self, num_envs: int, view: int):
        self.view = view
        self.state = EnvState.zeros(num_envs, "cpu")
        self._constants = observation.symbolic_constants(torch.device("cpu"))
        self._padded = observation.padded_classes(self.state.grid, view)
        self._bind()

    def _bind(self) -> None:
        # numpy views of the state's tensors (same memory): cheap per-environment writes.
        s = self.state
        self._agent = [t.numpy() for t in (s.agent_x, s.agent_y, s.agent_vx, s.agent_vy)]
        self._enemy = [t.numpy() for t in (s.enemy_x, s.enemy_y, s.enemy_vx)]
        self._alive = s.enemy_alive.numpy()

    def _widen(self, width: int) -> None:
        s, n = self.state, self.state.num_envs
        for name in ("enemy_x", "enemy_y", "enemy_vx", "enemy_lo", "enemy_hi"):
            wide = torch.zeros(n, width)
            wide[:, : getattr(s, name).shape[1]] = getattr(s, name)
            setattr(s, name, wide)
        alive = torch.zeros(n, width, dtype=torch.bool)
        alive[:, : s.enemy_alive.shape[1]] = s.enemy_alive
        s.enemy_alive = alive
        self._bind()

    def set_level(self, i: int, level: NativeLevel) -> None:
        grid = torch.from_numpy(level.grid)
        self.state.grid[i] = grid
        self.state.coin_x[i], self.state.coin_y[i] = level.coin_x, level.coin_y
        self._padded[i] = observation.padded_classes(grid[None], self.view)[0]

    def set_dynamics(self, i: int, moving: NativeDynamics) -> None:
        for plane, value in zip(self._agent, moving.agent):
            plane[i] = value
        k = len(moving.enemy_x)
        if k > self._alive.shape[1]:
            self._widen(k)
        for plane, values in zip(self._enemy, (moving.enemy_x, moving.enemy_y, moving.enemy_vx)):
            plane[i, :k] = values
        self._alive[i, :k] = True
        self._alive[i, k:] = False

    def observe(self) -> np.ndarray:
        """uint8 ``[num_envs, view, view, SYMBOLIC_CHANNELS]``, a fresh array."""
        obs = observation.symbolic_obs(
            self.state, self.view, constants=self._constants, padded=self._padded
        )
        return obs.numpy()
