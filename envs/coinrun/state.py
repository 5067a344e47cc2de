"""Tile codes, physics constants and the batched state of the native CoinRun.

Everything here is plain data: the level generator (``levels.py``) fills it, the
physics (``physics.py``) advances it and the observation code (``observation.py``) reads
it.  All tensors share a leading batch dimension ``N`` (one entry per environment).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from ..native_core import as_index

# --- Grid geometry --------------------------------------------------------------------
# Levels live on a 64 x 64 tile grid as in procgen.  Grids are stored x-major,
# ``grid[n, x, y]`` with ``y = 0`` the bottom row, because the generator builds
# levels column by column.
GRID_W = 64
GRID_H = 64

# --- Tile codes (uint8) ---------------------------------------------------------------
# Solid tiles get the smallest codes so that "is solid" is a single comparison
# (``tile < NUM_SOLID``) on the hot path.
WALL = 0  # ground interior and the outer walls
WALL_TOP = 1  # the top tile of a ground column (drawn differently, same physics)
NUM_SOLID = 2
EMPTY = 2
BARRIER = 3  # invisible section edge: turns walking enemies, nothing else
LAVA = 4
LAVA_TOP = 5
SAW = 6  # saws never move, so they are tiles rather than entities
CRATE = 7  # one-way platform: supports the agent from above only
NUM_TILES = 8

# --- Physics (procgen CoinRun's constants) ---------------------------------------------
GRAVITY = 0.2
MAX_JUMP = 1.5  # vertical speed given by a jump
MAX_SPEED = 0.5
MIXRATE = 0.2  # horizontal velocity blend on the ground ...
AIR_CONTROL = 0.15  # ... multiplied by this in the air
AGENT_RX = 0.5
AGENT_RY = 0.5787
AGENT_START_X = 1.0 + AGENT_RX
AGENT_START_Y = 1.0 + AGENT_RY
ENEMY_SPEED = 0.15
ENEMY_R = 0.5
COLLISION_EPS = 0.001  # boxes must overlap by more than this to touch (procgen's POS_EPS)
COIN_REWARD = 10.0
DEFAULT_MAX_EPISODE_STEPS = 1000
NUM_ACTIONS = 15

# Largest jump the physics allows, in whole tiles; the generator caps section height
# changes and pit widths by these so every level stays solvable.
MAX_DY = int(MAX_JUMP * MAX_JUMP / (2 * GRAVITY) - 0.5)  # 5
MAX_DX = int(MAX_SPEED * 2 * MAX_JUMP / GRAVITY - 0.5)  # 7

MAX_SECTIONS = 5  # difficulty 3 draws between 3 and 5 sections
MAX_ENEMIES = MAX_SECTIONS * MAX_DX  # a pit of walking enemies holds one per column
START_SECTION_X = 5  # the first section starts here; columns 1..4 are the start area

NUM_THEMES = 6  # visual themes for hard mode (easy mode always uses theme 0)


@dataclass
class EnvState:
    """Batched state of ``N`` CoinRun environments (all tensors on one device).

    Level layout (fixed for an episode):
        grid: uint8 ``[N, GRID_W, GRID_H]`` tile codes, x-major.
        solid_bits, crate_bits, danger_bits: int64 ``[N, GRID_W]`` the same layout as one
            bit per row (bit ``y`` of column ``x``): the physics tests a whole column
            stretch with one gather and a shift instead of one gather per tile.
        level_seed: int64 ``[N]`` the procgen-style level seed of the current episode.
        theme: int64 ``[N]`` visual theme index (always 0 in easy mode).
        coin_x, coin_y: int64 ``[N]`` the coin's tile.
        end_x, end_y: int64 ``[N]`` the original end tile (where the coin sits when it
            is not moved); tracked for ``reached_end`` whether or not the coin is there.
        coin_randomized: bool ``[N]`` whether this level's coin was moved.
        enemy_lo, enemy_hi: float32 ``[N, MAX_ENEMIES]`` range of an enemy's centre x
            between the walls/barriers that turn it around.
        enemy_alive: bool ``[N, MAX_ENEMIES]`` which enemy slots are in use.

    Dynamic state:
        agent_x, agent_y, agent_vx, agent_vy: float32 ``[N]`` centre and velocity.
        on_crate: bool ``[N]`` the agent landed on a crate in the last step.
        facing_right: bool ``[N]`` for drawing only.
        enemy_x, enemy_y, enemy_vx: float32 ``[N, MAX_ENEMIES]``.
        reached_end: bool ``[N]`` the agent has touched the end tile this episode.
        steps: int64 ``[N]`` steps taken in the current episode.

    Episode bookkeeping:
        env_key: int64 ``[N]`` per-environment seed key (the vector env's ``seed + i``).
        episode: int64 ``[N]`` how many episodes this environment has started since
            its key was set; with ``env_key`` it decides the next level seed.
    """

    grid: torch.Tensor
    solid_bits: torch.Tensor
    crate_bits: torch.Tensor
    danger_bits: torch.Tensor
    level_seed: torch.Tensor
    theme: torch.Tensor
    coin_x: torch.Tensor
    coin_y: torch.Tensor
    end_x: torch.Tensor
    end_y: torch.Tensor
    coin_randomized: torch.Tensor
    enemy_lo: torch.Tensor
    enemy_hi: torch.Tensor
    enemy_alive: torch.Tensor
    agent_x: torch.Tensor
    agent_y: torch.Tensor
    agent_vx: torch.Tensor
    agent_vy: torch.Tensor
    on_crate: torch.Tensor
    facing_right: torch.Tensor
    enemy_x: torch.Tensor
    enemy_y: torch.Tensor
    enemy_vx: torch.Tensor
    reached_end: torch.Tensor
    steps: torch.Tensor
    env_key: torch.Tensor
    episode: torch.Tensor

    @property
    def num_envs(self) -> int:
        return self.grid.shape[0]

    @property
    def device(self) -> torch.device:
        return self.grid.device

    @classmethod
    def zeros(cls, num_envs: int, device: torch.device | str) -> EnvState:
        """An all-empty state; every environment must be reset before it is stepped."""
        n, e = num_envs, MAX_ENEMIES

        def f(*shape):
            return torch.zeros(shape, dtype=torch.float32, device=device)

        def i(*shape):
            return torch.zeros(shape, dtype=torch.int64, device=device)

        def b(*shape):
            return torch.zeros(shape, dtype=torch.bool, device=device)

        return cls(
            grid=torch.full((n, GRID_W, GRID_H), EMPTY, dtype=torch.uint8, device=device),
            solid_bits=i(n, GRID_W),
            crate_bits=i(n, GRID_W),
            danger_bits=i(n, GRID_W),
            level_seed=i(n),
            theme=i(n),
            coin_x=i(n),
            coin_y=i(n),
            end_x=i(n),
            end_y=i(n),
            coin_randomized=b(n),
            enemy_lo=f(n, e),
            enemy_hi=f(n, e),
            enemy_alive=b(n, e),
            agent_x=f(n),
            agent_y=f(n),
            agent_vx=f(n),
            agent_vy=f(n),
            on_crate=b(n),
            facing_right=b(n),
            enemy_x=f(n, e),
            enemy_y=f(n, e),
            enemy_vx=f(n, e),
            reached_end=b(n),
            steps=i(n),
            env_key=i(n),
            episode=i(n),
        )

    def update_bits(self) -> None:
        """Recompute the per-column bit masks after ``grid`` was edited."""
        self.solid_bits = column_bits(self.grid < NUM_SOLID)
        self.crate_bits = column_bits(self.grid == CRATE)
        self.danger_bits = column_bits((self.grid >= LAVA) & (self.grid <= SAW))

    def index(self, idx: torch.Tensor | slice) -> EnvState:
        """The sub-batch ``idx`` (a copy for index tensors, a view for slices)."""
        if isinstance(idx, torch.Tensor) and idx.dtype in (torch.int32, torch.int64):
            # Episode starts take a few environments out of the level bank every step;
            # index_select costs a fraction of advanced indexing on the CPU.
            return EnvState(
                **{f.name: getattr(self, f.name).index_select(0, idx) for f in fields(self)}
            )
        return EnvState(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def assign(self, idx: torch.Tensor, other: EnvState) -> None:
        """Write ``other`` into the environments ``idx`` (indices, each at most once, or a
        bool mask); ``other`` holds one environment per index."""
        idx = as_index(idx, self.device)
        for f in fields(self):
            getattr(self, f.name).index_copy_(0, idx, getattr(other, f.name))


def column_bits(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool ``[N, W, 64]`` mask into int64 ``[N, W]`` with bit ``y`` for row ``y``.

    Row 63 lands in the sign bit; every user extracts bits with shifts and masks, for
    which two's complement wrap-around is exact.
    """
    weights = torch.ones(GRID_H, dtype=torch.int64, device=mask.device) << torch.arange(
        GRID_H, device=mask.device
    )
    return (mask.to(torch.int64) * weights).sum(dim=2)


# --- The alive enemies ------------------------------------------------------------------
# Both the physics and the observation walk only the alive enemy slots on the CPU (few
# among many: docs/design-notes-envs.md, "Alive enemies"); the list lives here so that
# neither has to import the other.

_WORD_SCAN_FROM = 1 << 16  # mask entries: _true_positions reads 8 at a time (tests lower it)


def _true_positions(mask: torch.Tensor) -> torch.Tensor:
    """Ascending indices of the True entries of a flat CPU bool tensor: ``nonzero`` for
    sparse masks (alive enemy slots), 8 entries at a time.  It finds the 8-byte words that
    hold a True and looks inside those only, cheaper than ``nonzero`` on large sparse
    masks."""
    whole = mask.numel() // 8 * 8
    if mask.numel() < _WORD_SCAN_FROM or mask.storage_offset() % 8:  # or not word-aligned
        return mask.nonzero().squeeze(1)
    busy = mask[:whole].view(torch.int64).ne(0).nonzero().squeeze(1)
    candidates = (busy[:, None] * 8 + torch.arange(8, device=mask.device)).view(-1)
    found = candidates[mask.index_select(0, candidates)]
    return torch.cat((found, mask[whole:].nonzero().squeeze(1) + whole))


class EnemySlots(NamedTuple):
    """The alive enemies of a batch, flat (see :func:`alive_enemy_slots`).  ``env`` is
    ``flat // MAX_ENEMIES``, kept so that no step has to divide again."""

    env: torch.Tensor  # int64 [K]: each one's environment
    flat: torch.Tensor  # int64 [K]: its index in the flattened enemy arrays


def alive_enemy_slots(state: EnvState) -> EnemySlots:
    """Where the alive enemies are, for callers that keep it between steps (the physics'
    ``enemy_slots``, ``symbolic_obs(enemy_slots=...)``): it changes only with the levels,
    and finding the few alive ones among all slots is not free in large batches.
    ``flat = env * MAX_ENEMIES + slot``; any order will do."""
    flat = _true_positions(state.enemy_alive.reshape(-1))
    return EnemySlots(flat // state.enemy_alive.shape[1], flat)
