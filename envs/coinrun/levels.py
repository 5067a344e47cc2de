"""Batched procedural CoinRun levels and coin placement.

The generator follows procgen CoinRun's structure (games/coinrun.cpp): a difficulty
``d`` in 1..3, between ``d`` and ``2d - 1`` sections starting at x = 5, each with a height
change and a width scaled by ``d``; wide sections may become pits holding the level's one
danger type (lava, a row of saws or walking enemies) with an optional stepping block;
flat sections may hold a saw, a walking enemy (hard mode only) and up to two crate stacks;
invisible barriers mark section edges; the coin sits on a ground column at the end with
solid wall beyond.

Every level is a pure function of its seed: all choices come from counter-based hashes
(``rng.py``), one stream per choice, drawn for every level whether or not the choice is
used, so a batch of levels is built with a fixed loop over at most ``MAX_SECTIONS``
sections and no per-level Python.  Levels are laid out column by column (ground height,
lava height, saw row, stepping block row, crate stack) and rasterized in one pass.

The coin is placed separately (``place_coins``): moving it never changes the terrain, so
a level seed gives the same level with the coin at the end or moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..rng import probability_threshold, random_bits, random_int
from .state import (
    BARRIER,
    CRATE,
    EMPTY,
    ENEMY_R,
    ENEMY_SPEED,
    GRID_H,
    GRID_W,
    LAVA,
    LAVA_TOP,
    MAX_DX,
    MAX_DY,
    MAX_ENEMIES,
    MAX_SECTIONS,
    NUM_SOLID,
    NUM_THEMES,
    SAW,
    START_SECTION_X,
    WALL,
    WALL_TOP,
)

# Stream numbers for the random choices (one per choice; sections get a block each).
_S_DIFFICULTY, _S_NUM_SECTIONS, _S_DANGER, _S_THEME = 0, 1, 2, 3
_S_SECTION_BASE, _S_SECTION_STRIDE = 16, 32
_S_NUM_STREAMS = _S_SECTION_BASE + MAX_SECTIONS * _S_SECTION_STRIDE
_S_ENEMY_DIR = 400  # + column
_S_COIN_MOVED, _S_COIN_CHOICE = 1000, 1001  # shared with the procgen backend

COIN_PLACEMENTS = ("section", "anywhere")


@dataclass
class Levels:
    """A batch of ``B`` generated levels (layout only; see ``EnvState`` for the fields).

    Beyond the layout it keeps what coin placement needs: the sections' left edges
    (``section_x``, ``section_y``, ``section_valid``) and, per column, the height at which
    the agent can stand (``stand_y``, -1 where it cannot: pits, saws, crates).
    """

    grid: torch.Tensor  # uint8 [B, W, H]
    solid_bits: torch.Tensor  # int64 [B, W] (see EnvState)
    crate_bits: torch.Tensor  # int64 [B, W]
    danger_bits: torch.Tensor  # int64 [B, W]
    difficulty: torch.Tensor  # int64 [B]
    theme: torch.Tensor  # int64 [B]
    end_x: torch.Tensor  # int64 [B]
    end_y: torch.Tensor  # int64 [B]
    section_x: torch.Tensor  # int64 [B, MAX_SECTIONS]
    section_y: torch.Tensor  # int64 [B, MAX_SECTIONS]
    section_valid: torch.Tensor  # bool [B, MAX_SECTIONS]
    stand_y: torch.Tensor  # int64 [B, W]
    enemy_x: torch.Tensor  # float32 [B, E]
    enemy_y: torch.Tensor  # float32 [B, E]
    enemy_vx: torch.Tensor  # float32 [B, E]
    enemy_lo: torch.Tensor  # float32 [B, E]
    enemy_hi: torch.Tensor  # float32 [B, E]
    enemy_alive: torch.Tensor  # bool [B, E]


def generate_levels(level_seeds: torch.Tensor, hard: bool) -> Levels:
    """Generate one level per seed (int64 tensor ``[B]``); ``hard`` is procgen's hard mode."""
    key = level_seeds.to(torch.int64)
    device = key.device
    b = key.shape[0]
    xs = torch.arange(GRID_W, device=device)  # [W]

    # All of a level's random bits in one batched hash: [B, streams].
    bits = random_bits(key[:, None], torch.arange(_S_NUM_STREAMS, device=device))

    def draw(stream: int, n) -> torch.Tensor:
        """Uniform integers in [0, n) from the level's stream ``stream``."""
        return (bits[:, stream] * n) >> 32

    dif = draw(_S_DIFFICULTY, 3) + 1
    num_sections = draw(_S_NUM_SECTIONS, dif) + dif
    danger_type = draw(_S_DANGER, 3)  # 0 lava, 1 saws, 2 walking enemies (pits only)

    def columns(value: int) -> torch.Tensor:
        return torch.full((b, GRID_W), value, dtype=torch.int64, device=device)

    ground_h = columns(1)  # the floor row is solid everywhere
    lava_h = columns(0)  # lava fills rows 1 .. lava_h
    saw_y = columns(-1)
    step_y = columns(-1)  # stepping block row inside a pit
    crate_lo = columns(0)
    crate_h = columns(0)
    enemy_row = columns(-1)  # at most one walking enemy starts in any column
    barrier_x = torch.full((b, 2 * MAX_SECTIONS), -1, dtype=torch.int64, device=device)
    barrier_y = barrier_x.clone()
    section_x = torch.full((b, MAX_SECTIONS), -1, dtype=torch.int64, device=device)
    section_y = section_x.clone()
    section_valid = torch.zeros((b, MAX_SECTIONS), dtype=torch.bool, device=device)

    curr_x = torch.full((b,), START_SECTION_X, dtype=torch.int64, device=device)
    curr_y = torch.ones(b, dtype=torch.int64, device=device)

    for s in range(MAX_SECTIONS):
        base = _S_SECTION_BASE + s * _S_SECTION_STRIDE
        active = (s < num_sections) & (curr_x + 15 < GRID_W)

        dy = (draw(base, 4) + 1 + dif // 3).clamp(max=MAX_DY)
        go_down = (curr_y >= 20) | ((curr_y >= 5) & (draw(base + 1, 2) == 1))
        dy = torch.where(go_down, -dy, dy)
        dx = draw(base + 2, 2 * dif) + 3 + dif // 3
        y = (curr_y + dy).clamp(min=1)

        use_pit = active & (dx > 7) & (y > 3) & (draw(base + 3, 20) >= dif)
        flat = active & ~use_pit

        # Pit: ground x1 wide on the left, x2 on the right, at most MAX_DX to jump over.
        x1 = draw(base + 4, 3) + 1
        x2 = draw(base + 5, 3) + 1
        pit_w = dx - x1 - x2
        x2 = torch.where(pit_w > MAX_DX, dx - x1 - MAX_DX, x2)
        pit_w = pit_w.clamp(max=MAX_DX)
        lava_height = draw(base + 6, (y - 3).clamp(min=1)) + 1
        r7, r8 = draw(base + 7, 2), draw(base + 8, 2)
        step_off = torch.where(pit_w == 5, 1 + r7, 2 + r7)
        step_w = torch.where(pit_w <= 6, 1 + r8, pit_w - step_off - (2 + r8))
        has_step = use_pit & (pit_w > 4)

        # Flat section: a saw, a walking enemy (hard mode) and up to two crate stacks.
        inner = (dx - 2).clamp(min=1)
        has_saw = flat & (draw(base + 9, 10) < 2 * dif) & (dx > 3)
        saw_x = curr_x + draw(base + 10, inner) + 1
        has_enemy = flat & (draw(base + 11, 10) < dif) & (dx > 3) & hard
        walker_x = curr_x + draw(base + 12, inner) + 1

        cx = curr_x[:, None]
        in_section = (xs >= cx) & (xs < cx + dx[:, None])
        pit_lo = cx + x1[:, None]
        in_pit = use_pit[:, None] & (xs >= pit_lo) & (xs < pit_lo + pit_w[:, None])
        ground = (flat[:, None] & in_section) | (use_pit[:, None] & in_section & ~in_pit)
        ground_h = torch.where(ground, y[:, None], ground_h)
        lava_h = torch.where(in_pit & (danger_type == 0)[:, None], lava_height[:, None], lava_h)
        saw_y = torch.where(in_pit & (danger_type == 1)[:, None], 1, saw_y)
        enemy_row = torch.where(in_pit & (danger_type == 2)[:, None], 1, enemy_row)
        step_lo = pit_lo + step_off[:, None]
        in_step = has_step[:, None] & (xs >= step_lo) & (xs < step_lo + step_w[:, None])
        step_y = torch.where(in_step, (y - 1)[:, None], step_y)
        saw_y = torch.where(has_saw[:, None] & (xs == saw_x[:, None]), y[:, None], saw_y)
        at_walker = has_enemy[:, None] & (xs == walker_x[:, None])
        enemy_row = torch.where(at_walker, y[:, None], enemy_row)
        for i in range(2):
            crate_x = curr_x + draw(base + 13 + 3 * i, inner) + 1
            pile = draw(base + 15 + 3 * i, 3) + 1
            place = (
                flat
                & (draw(base + 14 + 3 * i, 2) == 1)
                & ~(has_saw & (crate_x == saw_x))
                & ~(has_enemy & (crate_x == walker_x))
            )
            at_crate = place[:, None] & (xs == crate_x[:, None])
            crate_lo = torch.where(at_crate, y[:, None], crate_lo)
            crate_h = torch.where(at_crate, torch.maximum(crate_h, pile[:, None]), crate_h)

        # Barriers at both section edges (the left one only where the column is open).
        left = (curr_x - 1).clamp(min=0)
        left_ground = ground_h.gather(1, left[:, None])[:, 0]
        left_step = step_y.gather(1, left[:, None])[:, 0]
        left_open = (y >= left_ground) & (left_step != y)
        barrier_x[:, 2 * s] = torch.where(active & left_open, left, -1)
        barrier_y[:, 2 * s] = y
        barrier_x[:, 2 * s + 1] = torch.where(active, curr_x + dx, -1)
        barrier_y[:, 2 * s + 1] = y

        section_x[:, s] = torch.where(active, curr_x, -1)
        section_y[:, s] = y
        section_valid[:, s] = active
        curr_x = torch.where(active, curr_x + dx, curr_x)
        curr_y = torch.where(active, y, curr_y)

    end_x, end_y = curr_x, curr_y
    ground_h = torch.where(xs == end_x[:, None], end_y[:, None], ground_h)
    beyond = (xs > end_x[:, None]) | (xs == 0) | (xs == GRID_W - 1)
    ground_h = torch.where(beyond, GRID_H, ground_h)

    grid = _rasterize(ground_h, lava_h, saw_y, step_y, crate_lo, crate_h)
    _put_barriers(grid, barrier_x, barrier_y)
    grid[torch.arange(b, device=device), end_x, end_y] = EMPTY  # the coin's tile

    masks = _column_bits(ground_h, lava_h, saw_y, step_y, crate_lo, crate_h)
    stand_y = _standing_heights(ground_h, lava_h, saw_y, step_y, crate_h, end_x)
    enemies = _spawn_enemies(key, grid, enemy_row)
    theme = draw(_S_THEME, NUM_THEMES) if hard else torch.zeros_like(key)
    return Levels(
        grid=grid,
        **masks,
        difficulty=dif,
        theme=theme,
        end_x=end_x,
        end_y=end_y,
        section_x=section_x,
        section_y=section_y,
        section_valid=section_valid,
        stand_y=stand_y,
        **enemies,
    )


# Rows above this hold nothing but open sky and the walls beyond the end (ground tops
# stay below 25 and crate stacks add at most 3), so only this band needs a comparison per
# tile; the rest of each column is a single value.
_CONTENT_H = 32


def _rasterize(ground_h, lava_h, saw_y, step_y, crate_lo, crate_h) -> torch.Tensor:
    """Turn the per-column description into the tile grid ``[B, W, H]``.

    Each column is a filled stretch from the floor up (ground, or lava in a pit) with a
    few single tiles on top of it (saw, stepping block, crates), so the grid is one
    comparison pass plus a handful of per-column scatters.  Scatters for columns without
    the feature write into the ceiling row, which is restored at the end.
    """
    device = ground_h.device
    b = ground_h.shape[0]
    u8 = lambda v: torch.tensor(v, dtype=torch.uint8, device=device)  # noqa: E731
    is_lava = lava_h > 0
    fill_top = torch.where(is_lava, lava_h + 1, ground_h)  # rows below are filled
    fill = torch.where(is_lava, u8(LAVA), u8(WALL))

    grid = torch.empty((b, GRID_W, GRID_H), dtype=torch.uint8, device=device)
    y = torch.arange(_CONTENT_H, device=device, dtype=torch.int16)
    band = y < fill_top.to(torch.int16)[:, :, None]
    torch.where(band, fill[:, :, None], u8(EMPTY), out=grid[:, :, :_CONTENT_H])
    sky = torch.where(ground_h >= GRID_H, u8(WALL), u8(EMPTY))
    grid[:, :, _CONTENT_H:] = sky[:, :, None]

    ceiling = GRID_H - 1

    def put(rows: torch.Tensor, where_: torch.Tensor, value: int | torch.Tensor) -> None:
        index = torch.where(where_ & (rows >= 0) & (rows < ceiling), rows, ceiling)[:, :, None]
        src = value if isinstance(value, torch.Tensor) else u8(value).expand(b, GRID_W)
        grid.scatter_(2, index, src[:, :, None])

    top_code = torch.where(is_lava, u8(LAVA_TOP), u8(WALL_TOP))
    put(fill_top - 1, ground_h < GRID_H, top_code)
    put(torch.zeros_like(ground_h), is_lava, WALL_TOP)  # the pit floor under the lava
    put(step_y, step_y >= 0, WALL_TOP)
    put(saw_y, saw_y >= 0, SAW)
    for k in range(3):
        put(crate_lo + k, crate_h > k, CRATE)
    grid[:, :, ceiling] = WALL
    return grid


def _column_bits(ground_h, lava_h, saw_y, step_y, crate_lo, crate_h) -> dict:
    """The grid's solid, crate and danger tiles as one int64 bit mask per column.

    Built from the column description directly (the same layout ``_rasterize`` draws),
    which is far cheaper than packing the rasterized grid.
    """
    one = torch.ones_like(ground_h)

    def bit(rows):  # a single row's bit, or 0 where rows < 0
        return torch.where(rows >= 0, one << rows.clamp(min=0), 0)

    def below(rows):  # bits 0 .. rows-1 (all 64 when rows >= 64)
        return torch.where(rows >= 64, -1, (one << rows.clamp(max=63)) - 1)

    ceiling = one << (GRID_H - 1)
    solid = below(ground_h) | bit(step_y) | ceiling | 1  # row 0 is the floor everywhere
    crate = below(crate_h) << crate_lo
    danger = (below(lava_h) << 1) | bit(saw_y)
    return dict(solid_bits=solid, crate_bits=crate, danger_bits=danger)


def _put_barriers(grid: torch.Tensor, barrier_x: torch.Tensor, barrier_y: torch.Tensor) -> None:
    """Mark barrier cells where the tile is still empty (later ground overwrites them)."""
    b = grid.shape[0]
    rows = torch.arange(b, device=grid.device)[:, None].expand_as(barrier_x)
    valid = (barrier_x >= 0) & (barrier_y >= 0) & (barrier_y < GRID_H)
    rows, bx, by = rows[valid], barrier_x[valid], barrier_y[valid]
    empty = grid[rows, bx, by] == EMPTY
    grid[rows[empty], bx[empty], by[empty]] = BARRIER


def _standing_heights(ground_h, lava_h, saw_y, step_y, crate_h, end_x) -> torch.Tensor:
    """Per column, the row where the agent stands on solid ground; -1 if none is safe.

    Candidates for a coin placed "anywhere": open pit floors (lava, saws or enemies),
    saws and crates are excluded, as are the start area (x < 5) and the end column.
    """
    xs = torch.arange(GRID_W, device=ground_h.device)
    stand = torch.where(step_y >= 0, step_y + 1, ground_h)
    pit_floor = (stand == 1) & (xs >= START_SECTION_X)
    ok = (
        (xs >= START_SECTION_X)
        & (xs < end_x[:, None])
        & (lava_h == 0)
        & (saw_y != stand)
        & (crate_h == 0)
        & ~(pit_floor & (ground_h == 1) & (step_y < 0))
    )
    return torch.where(ok, stand, -1)


def _spawn_enemies(key: torch.Tensor, grid: torch.Tensor, enemy_row: torch.Tensor) -> dict:
    """Pack the walking enemies into ``MAX_ENEMIES`` slots with their patrol bounds.

    An enemy walks along its row and turns at walls and barriers; it never leaves that
    stretch, so the bounds of its centre are computed once here.
    """
    b = grid.shape[0]
    device = grid.device
    has = enemy_row >= 0  # [B, W]
    slot = torch.cumsum(has.to(torch.int64), dim=1) - 1
    rows = torch.arange(b, device=device)[:, None].expand_as(enemy_row)
    rows, cols, slots = rows[has], torch.nonzero(has)[:, 1], slot[has]
    ey = enemy_row[has]

    def slots_of(fill, dtype):
        return torch.full((b, MAX_ENEMIES), fill, dtype=dtype, device=device)

    alive = slots_of(False, torch.bool)
    enemy_x, enemy_y = slots_of(0.0, torch.float32), slots_of(0.0, torch.float32)
    enemy_vx = slots_of(0.0, torch.float32)
    enemy_lo, enemy_hi = slots_of(0.0, torch.float32), slots_of(0.0, torch.float32)

    # Patrol bounds: nearest blocking tile (solid or barrier) left and right in the row.
    line = grid[rows, :, ey]  # [K, W]
    blocks = (line < NUM_SOLID) | (line == BARRIER)
    xs = torch.arange(GRID_W, device=device)
    left = torch.where(blocks & (xs < cols[:, None]), xs, -1).amax(dim=1)
    right = torch.where(blocks & (xs > cols[:, None]), xs, GRID_W).amin(dim=1)
    # One stream per column, so the direction does not depend on the slot order.
    direction = random_bits(key[rows], _S_ENEMY_DIR + cols) & 1

    alive[rows, slots] = True
    enemy_x[rows, slots] = cols.to(torch.float32) + 0.5
    enemy_y[rows, slots] = ey.to(torch.float32) + 0.5
    enemy_vx[rows, slots] = ENEMY_SPEED * (2.0 * direction.to(torch.float32) - 1.0)
    enemy_lo[rows, slots] = (left + 1).to(torch.float32) + ENEMY_R
    enemy_hi[rows, slots] = right.to(torch.float32) - ENEMY_R
    return dict(
        enemy_x=enemy_x,
        enemy_y=enemy_y,
        enemy_vx=enemy_vx,
        enemy_lo=enemy_lo,
        enemy_hi=enemy_hi,
        enemy_alive=alive,
    )


def coin_moved(level_seeds: torch.Tensor, rand_fraction: float) -> torch.Tensor:
    """Whether each level's coin is moved: a per-seed draw with probability ``rand_fraction``.

    Both backends use this, so a level seed gets the same decision in each.
    """
    key = level_seeds.to(torch.int64)
    return random_bits(key, _S_COIN_MOVED) < probability_threshold(rand_fraction)


def coin_choice(level_seeds: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """Which of ``count`` candidate tiles each level's moved coin takes (uniform)."""
    return random_int(level_seeds.to(torch.int64), _S_COIN_CHOICE, count)


def place_coins(
    levels: Levels,
    level_seeds: torch.Tensor,
    rand_fraction: float,
    coin_placement: str = "section",
    coin_region: tuple[float, float] = (0.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decide which levels get a moved coin and where; returns ``coin_x, coin_y, moved``.

    Each level independently (from its seed) has its coin moved with probability
    ``rand_fraction``.  A moved coin goes to a uniformly chosen candidate tile:
    "section" - the left edge of a section, on top of the ground (the paper's rule);
    "anywhere" - any safe standing tile from the first section up to the end.
    ``coin_region=(lo, hi)`` keeps candidates with ``lo * end_x <= x <= hi * end_x``;
    a level with no candidate inside the region uses the candidates nearest to it.
    """
    key = level_seeds.to(torch.int64)
    moved = coin_moved(key, rand_fraction)

    if coin_placement == "section":
        cand_x, cand_y, cand_ok = levels.section_x, levels.section_y, levels.section_valid
    elif coin_placement == "anywhere":
        xs = torch.arange(GRID_W, device=key.device).expand_as(levels.stand_y)
        cand_x, cand_y, cand_ok = xs, levels.stand_y, levels.stand_y >= 0
    else:
        raise ValueError(
            f"coin_placement={coin_placement!r} is not supported; use one of {COIN_PLACEMENTS}"
        )

    lo, hi = coin_region
    length = levels.end_x[:, None].to(torch.float32)
    x = cand_x.to(torch.float32)
    distance = torch.relu(lo * length - x) + torch.relu(x - hi * length)
    distance = torch.where(cand_ok, distance, torch.inf)
    best = cand_ok & (distance <= distance.amin(dim=1, keepdim=True))

    count = best.sum(dim=1)
    pick = coin_choice(key, count.clamp(min=1))
    rank = torch.cumsum(best.to(torch.int64), dim=1) - 1
    chosen = (best & (rank == pick[:, None])).to(torch.int64).argmax(dim=1, keepdim=True)
    moved = moved & (count > 0)
    coin_x = torch.where(moved, cand_x.gather(1, chosen)[:, 0], levels.end_x)
    coin_y = torch.where(moved, cand_y.gather(1, chosen)[:, 0], levels.end_y)
    return coin_x, coin_y, moved
