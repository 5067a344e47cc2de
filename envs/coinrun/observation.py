"""Observations drawn from a batched :class:`~.state.EnvState`.

Three pure functions, tensors in and tensors out, with no Python loop over
environments or enemies; they run on CPU and CUDA and give the same bytes on both:

* :func:`symbolic_obs` -- an agent-centred grid of 0/255 feature planes, uint8
  ``[N, view, view, SYMBOLIC_CHANNELS]`` (channels last, row 0 at the top).
* :func:`pixel_obs` -- an agent-centred RGB image, uint8 ``[N, size, size, 3]``.
* :func:`human_frame` -- one environment's larger RGB view for ``render_mode="rgb_array"``,
  with the level's original end tile outlined.

On CPU both batched observations are bound by memory traffic and by the per-element
cost of gathers, so they are built from a few whole-batch operations that gather large
rows with small index tensors, and no float tensor as large as the output: tile crops
(from :func:`padded_classes`, which the core keeps, or :func:`_crop_tiles`), then a
per-environment table of output bytes written by one ``index_select`` (symbolic), or a
palette lookup and row copies (pixels); coin, enemies and agent are drawn on top.  How
and why: docs/design-notes-envs.md, "Observations".
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
import torch

from .state import (
    AGENT_RX,
    AGENT_RY,
    BARRIER,
    CRATE,
    EMPTY,
    ENEMY_R,
    GRID_H,
    GRID_W,
    LAVA,
    LAVA_TOP,
    MAX_JUMP,
    MAX_SPEED,
    NUM_THEMES,
    NUM_TILES,
    SAW,
    WALL,
    WALL_TOP,
    EnemySlots,
    EnvState,
    alive_enemy_slots,
)

__all__ = [
    "AGENT_COLOURS",
    "COIN_COLOUR",
    "END_MARKER_COLOURS",
    "ENEMY_COLOUR",
    "NUM_TILE_COLOURS",
    "PALETTE",
    "SYMBOLIC_CHANNELS",
    "SYMBOLIC_CHANNEL_NAMES",
    "TILE_COLOUR_NAMES",
    "human_frame",
    "padded_classes",
    "padded_shape",
    "pair_tables",
    "pixel_obs",
    "SymbolicPlan",
    "uses_pair_tables",
    "symbolic_classes",
    "symbolic_obs",
    "symbolic_plan",
]

# The crop marks out-of-grid cells by multiplying tile codes with a 0/1 mask, which
# yields WALL only because WALL is code 0 (state.py puts solid tiles first on purpose).
assert WALL == 0

# --- Symbolic channels ------------------------------------------------------------------
SYMBOLIC_CHANNEL_NAMES = (
    "solid",  # WALL, WALL_TOP, or outside the grid
    "lava",  # LAVA, LAVA_TOP
    "saw",
    "crate",
    "coin",
    "enemy",
    "vx",  # constant plane: agent_vx mapped from [-MAX_SPEED, MAX_SPEED] to 0..255
    "vy",  # constant plane: agent_vy mapped from [-MAX_JUMP, MAX_JUMP] to 0..255
    "x_frac",  # constant plane: agent_x - floor(agent_x) mapped to 0..255
    "y_frac",  # constant plane: agent_y - floor(agent_y) mapped to 0..255
)
SYMBOLIC_CHANNELS = len(SYMBOLIC_CHANNEL_NAMES)
_COIN_CH = SYMBOLIC_CHANNEL_NAMES.index("coin")
_ENEMY_CH = SYMBOLIC_CHANNEL_NAMES.index("enemy")
_VX_CH = SYMBOLIC_CHANNEL_NAMES.index("vx")  # the first of the four constant planes


# What a tile shows in the symbolic view.  Tiles that look alike there (a wall and its
# top, empty space and the invisible barrier, lava and its surface) share a class, so the
# per-environment tables of symbolic_obs have 5 rows per cell instead of NUM_TILES.
SOLID_CLASS, EMPTY_CLASS, LAVA_CLASS, SAW_CLASS, CRATE_CLASS = range(5)
NUM_SYMBOLIC_CLASSES = 5
# symbolic_classes maps codes with two byte operations, which relies on this order.
assert tuple(range(8)) == (WALL, WALL_TOP, EMPTY, BARRIER, LAVA, LAVA_TOP, SAW, CRATE)


def symbolic_classes(tiles: torch.Tensor) -> torch.Tensor:
    """The symbolic class (``SOLID_CLASS`` ...) of each uint8 tile code, same shape.

    The codes come in look-alike pairs (``WALL``/``WALL_TOP``, ``EMPTY``/``BARRIER``,
    ``LAVA``/``LAVA_TOP``) followed by ``SAW`` and ``CRATE``, so halving the code does it
    but for ``CRATE``: no lookup, cheap even over whole batches of level grids.
    """
    return (tiles >> 1).add_(tiles == CRATE)


def _symbolic_class_bytes() -> torch.Tensor:
    """uint8 ``[NUM_SYMBOLIC_CLASSES, SYMBOLIC_CHANNELS]``: the symbolic bytes of each
    class (the coin, enemy and constant planes left 0)."""
    table = torch.zeros(NUM_SYMBOLIC_CLASSES, SYMBOLIC_CHANNELS, dtype=torch.uint8)
    table[SOLID_CLASS, 0] = 255
    table[LAVA_CLASS, 1] = 255
    table[SAW_CLASS, 2] = 255
    table[CRATE_CLASS, 3] = 255
    return table  # EMPTY_CLASS stays all zero


# --- Colours ------------------------------------------------------------------------------
TILE_COLOUR_NAMES = ("background", "wall", "wall_top", "lava", "lava_top", "saw", "crate")
NUM_TILE_COLOURS = len(TILE_COLOUR_NAMES)

# Tile code -> palette column.  BARRIER is invisible, so it looks like the background.
_TILE_COLOUR_INDEX = [0] * NUM_TILES
for _code, _name in (
    (WALL, "wall"),
    (WALL_TOP, "wall_top"),
    (EMPTY, "background"),
    (BARRIER, "background"),
    (LAVA, "lava"),
    (LAVA_TOP, "lava_top"),
    (SAW, "saw"),
    (CRATE, "crate"),
):
    _TILE_COLOUR_INDEX[_code] = TILE_COLOUR_NAMES.index(_name)

# Hazards and crates keep one look across themes so that what is dangerous stays
# recognisable; the background and the ground change with the theme.
_LAVA, _LAVA_TOP, _SAW, _CRATE = (200, 45, 20), (255, 125, 25), (175, 175, 190), (165, 105, 20)
_THEMES = (
    # background        wall               wall top
    ((140, 200, 240), (100, 65, 45), (70, 170, 55)),  # 0 meadow (easy mode)
    ((245, 165, 120), (110, 50, 90), (175, 100, 135)),  # 1 dusk
    ((25, 30, 70), (60, 70, 110), (120, 130, 160)),  # 2 night
    ((240, 225, 165), (200, 150, 95), (235, 195, 115)),  # 3 desert
    ((60, 45, 35), (95, 90, 85), (150, 140, 120)),  # 4 cave
    ((200, 210, 245), (80, 125, 165), (255, 255, 255)),  # 5 snow
)
assert len(_THEMES) == NUM_THEMES
PALETTE = torch.tensor(
    [[bg, wall, top, _LAVA, _LAVA_TOP, _SAW, _CRATE] for bg, wall, top in _THEMES],
    dtype=torch.uint8,
)
"""uint8 ``[NUM_THEMES, NUM_TILE_COLOURS, 3]`` tile colours, columns as in TILE_COLOUR_NAMES."""

# Entity colours.  Within every theme all colours drawn (tiles, coin, enemy, agent) are
# at least ~59 apart in RGB distance, and the themes' backgrounds and walls differ.
COIN_COLOUR = (255, 215, 0)
ENEMY_COLOUR = (150, 40, 200)
AGENT_COLOURS = torch.tensor(
    [
        (255, 255, 255),  # meadow
        (30, 230, 230),  # dusk
        (255, 255, 255),  # night
        (30, 110, 255),  # desert
        (0, 255, 160),  # cave
        (255, 70, 190),  # snow
    ],
    dtype=torch.uint8,
)
"""uint8 ``[NUM_THEMES, 3]``: the agent's body colour per theme."""
_AGENT_EYE = (0, 0, 0)
END_MARKER_COLOURS = ((0, 0, 0), (255, 255, 255))
"""The two colours of the chequered outline around the end tile in :func:`human_frame`."""

# Slightly over half a tile (the disc is clipped to its tile): at 5 px per tile the coin is
# a 5x5 block minus its corners when pixel centres fall at tile centres, and still round
# when they fall on tile edges (the agent at a tile centre).
_COIN_RADIUS = 0.52


# --- Cached constants ---------------------------------------------------------------------
# Small constant tensors are built once per (arguments, device) instead of on every call.
@cache
def _symbolic_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cell = _symbolic_class_bytes()
    k = NUM_SYMBOLIC_CLASSES
    # Row a + k * b: the bytes of a cell of class a followed by one of class b.
    pair = torch.cat((cell.repeat(k, 1), cell.repeat_interleave(k, 0)), 1)
    # Multipliers of the constant planes' offsets (see _constant_bytes).
    scale = torch.tensor(
        [255.0 / (2 * MAX_SPEED), 255.0 / (2 * MAX_JUMP), 255.0, 255.0], dtype=torch.float32
    )
    return cell.to(device), pair.to(device), scale.to(device)


@cache
def _palette_by_code(device: torch.device) -> torch.Tensor:
    """uint8 ``[NUM_THEMES * NUM_TILES, 3]``: row ``theme * NUM_TILES + code``."""
    idx = torch.tensor(_TILE_COLOUR_INDEX)
    return PALETTE[:, idx].reshape(NUM_THEMES * NUM_TILES, 3).contiguous().to(device)


@cache
def _entity_colours(device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "coin": torch.tensor(COIN_COLOUR, dtype=torch.uint8, device=device),
        "enemy": torch.tensor(ENEMY_COLOUR, dtype=torch.uint8, device=device),
        "eye": torch.tensor(_AGENT_EYE, dtype=torch.uint8, device=device),
        "agent": AGENT_COLOURS.to(device),
    }


class _PixelGeometry:
    """Per-(size, tiles_across, device) constants of :func:`pixel_obs`.

    The centre of pixel column ``p`` lies ``offset[p] = ((p + 0.5) / size - 1/2) *
    tiles_across`` tiles right of the agent's centre, and the centre of pixel row ``p``
    ``offset[p]`` tiles *below* it (the image is square and symmetric).  The offsets
    are correctly rounded float64 values computed exactly on the CPU, so a pixel centre
    that should sit exactly on a tile edge does (e.g. every 5th pixel when the agent is
    at a tile centre) and every device sees the same values.

    Everything that decides which pixels a tile or an entity covers compares an exact
    difference ``object - agent`` (float32 values, so exact in float64) with these
    offsets, using half-open boxes ``[lo, hi)``: tiles and entities agree to the pixel,
    and every environment gets the same rounding.
    """

    def __init__(self, size: int, tiles_across: float, device: torch.device):
        across = Fraction(tiles_across)
        offset = [float(Fraction(2 * p + 1 - size, 2 * size) * across) for p in range(size)]
        offset = torch.tensor(offset, dtype=torch.float64)
        self.size = size
        self.px_per_tile = size / tiles_across
        self.offset = offset.to(device)
        self.first_offset = float(offset[0])  # a Python float: no device read later
        # Pixel centres span (size - 1) / px_per_tile tiles, so at most this many tile
        # columns (and rows) are visible.
        self.tiles = math.floor((size - 1) / self.px_per_tile) + 2
        # The agent never moves on screen: its pixel box is fixed.
        rx, ry = (torch.tensor(r, dtype=torch.float64) for r in (AGENT_RX, AGENT_RY))
        x0, x1 = _span(-rx, rx, offset, "x")
        y0, y1 = _span(-ry, ry, offset, "y")
        self.agent_box = (int(x0), int(x1), int(y0), int(y1))


@cache
def _pixel_geometry(size: int, tiles_across: float, device: torch.device) -> _PixelGeometry:
    return _PixelGeometry(size, tiles_across, device)


def symbolic_constants(device: torch.device) -> tuple:
    """The constant tables :func:`symbolic_obs` reads (cached per device)."""
    return _symbolic_tables(torch.device(device))


def pixel_constants(size: int, tiles_across: float, device: torch.device) -> tuple:
    """The constants :func:`pixel_obs` reads: geometry, palette, entity colours (cached)."""
    device = torch.device(device)
    return (
        _pixel_geometry(int(size), float(tiles_across), device),
        _palette_by_code(device),
        _entity_colours(device),
    )


# --- Sparse writes ------------------------------------------------------------------------
# Coins, enemies and the pixels of entities are written by scattering into the output.
# Items that are off-screen (or dead) must not land: they are aimed at a *dump slot* --
# one spare element after the real output in the same allocation, which the returned view
# leaves out -- which needs no host sync.  On CPU, the candidate pixels of entity boxes
# and the alive enemies among all enemy slots are picked out with boolean indexing first,
# several times cheaper than writing them all; a symbolic mark is
# one byte per item, which costs about what picking it out would, so it always uses the
# dump slot.  Both give the same result.
#
# This flag turns on the CPU's own paths: that picking out, and symbolic cells written two
# per row (see _cell_bytes_in_pairs).  Tests switch it off to run the accelerator path on
# CPU and compare.  The two-cell rows read class bytes as 16-bit words: little-endian only.
_CPU_PATHS = sys.byteorder == "little"
# Below these sizes the CPU's extra steps cost more than they save (tests lower them).
_PAIRS_FROM = 1024  # environments: symbolic cells two per row


def _select(keep: torch.Tensor, *items: torch.Tensor):
    """Flatten ``items`` (shaped like ``keep``; expanded views are fine) and, on CPU, keep
    only the entries where ``keep`` is True.  Returns ``(items, keep)``, with ``keep``
    None once it has been applied."""
    if _CPU_PATHS and keep.device.type == "cpu":
        chosen = keep.nonzero(as_tuple=True)
        return [t[chosen] for t in items], None
    return [t.reshape(-1) for t in items], keep.reshape(-1)


def _alive_enemies(state: EnvState, slots: EnemySlots | None = None):
    """``(env, x, y, keep)`` of the enemy slots, flat: on CPU the alive ones only (``keep``
    None; ``slots`` is :func:`alive_enemy_slots` when the caller keeps it), elsewhere all
    of them with ``keep`` the alive mask (see "Sparse writes")."""
    n, per_env = state.enemy_alive.shape
    x, y = state.enemy_x.reshape(-1), state.enemy_y.reshape(-1)
    if _CPU_PATHS and state.device.type == "cpu":
        env, alive = alive_enemy_slots(state) if slots is None else slots
        return env, x.index_select(0, alive), y.index_select(0, alive), None
    env = torch.arange(n, device=state.device)[:, None].expand(n, per_env).reshape(-1)
    return env, x, y, state.enemy_alive.reshape(-1)


def _scatter(target: torch.Tensor, index: torch.Tensor, keep: torch.Tensor | None, value) -> None:
    """``target[index] = value`` where ``keep`` (all if None); ``target[-1]`` is the dump."""
    if keep is not None:
        index = torch.where(keep, index, target.shape[0] - 1)
    target[index] = value


# --- Tile crop ----------------------------------------------------------------------------
def _crop_tiles(grid: torch.Tensor, x0: torch.Tensor, y_top: torch.Tensor, rows: int, cols: int):
    """uint8 ``[N, rows, cols]`` with ``out[n, r, c] = grid[n, x0[n] + c, y_top[n] - r]``.

    Cells outside the grid read as ``WALL``.  ``x0`` and ``y_top`` are int64 ``[N]``.
    """
    n, width, height = grid.shape
    dev = grid.device
    xs = x0[:, None] + torch.arange(cols, device=dev)  # [N, cols]
    ys = y_top[:, None] - torch.arange(rows, device=dev)  # [N, rows]
    inside = ((ys >= 0) & (ys < height)).to(torch.uint8)[:, :, None] * (
        (xs >= 0) & (xs < width)
    ).to(torch.uint8)[:, None, :]
    # One gather over each environment's flattened grid.  Clamping each axis keeps the
    # reads of out-of-grid cells in bounds; those cells are then set to WALL (= 0).
    index = (xs.clamp(0, width - 1) * height)[:, None, :] + ys.clamp(0, height - 1)[:, :, None]
    flat = grid.reshape(n, width * height)
    tiles = flat.gather(1, index.view(n, rows * cols)).view(n, rows, cols)
    return tiles.mul_(inside)


# --- Symbolic observation -----------------------------------------------------------------
def padded_classes(grid: torch.Tensor, view: int) -> torch.Tensor:
    """Level grids laid out for :func:`symbolic_obs`'s crop: uint8 ``[N,
    *padded_shape(view)]`` of :func:`symbolic_classes`.

    Rows run from the top (highest y) down and columns left to right, with ``h = view //
    2`` cells of wall left, right and above the grid and ``view`` rows below it: an
    all-wall block that the view of an agent outside the grid points at.  In this layout
    every row of a view is a contiguous run of ``view`` bytes, so the crop is one
    ``index_select`` of runs and needs no bounds handling.  The layout changes only when
    a level does: :class:`~.core.CoinRunCore` keeps one up to date.
    """
    h = view // 2
    out = torch.zeros(
        grid.shape[0], *padded_shape(view), dtype=torch.uint8, device=grid.device
    )  # SOLID_CLASS == 0
    out[:, h : h + GRID_H, h : h + GRID_W] = symbolic_classes(grid.transpose(1, 2).flip(1))
    return out


def padded_shape(view: int) -> tuple[int, int]:
    """(rows, columns) of one environment's :func:`padded_classes`."""
    h = view // 2
    return h + GRID_H + view, GRID_W + 2 * h


def _crop_padded(padded: torch.Tensor, starts: torch.Tensor, view: int) -> torch.Tensor:
    """uint8 ``[N, view * view]``: the views that start at bytes ``starts`` (``[N, view]``,
    :class:`SymbolicPlan`) of ``padded`` (:func:`padded_classes`), row by row."""
    n = padded.shape[0]
    # Overlapping windows: window i is bytes i .. i + view - 1 of the whole batch.
    flat = padded.view(-1)
    windows = flat.as_strided((max(flat.numel() - (view - 1), 0), view), (1, 1))
    return windows.index_select(0, starts.view(-1)).view(n, view * view)


def _cell_bytes(classes: torch.Tensor, consts: torch.Tensor, cell_table, out) -> None:
    """Write every cell's ``SYMBOLIC_CHANNELS`` bytes (the class bytes, then the
    environment's constants) into ``out``, uint8 ``[N * cells * SYMBOLIC_CHANNELS]``.

    A per-environment table of the bytes of each class, then one ``index_select`` of
    10-byte rows writes every output byte once.
    """
    n, cells = classes.shape
    k = NUM_SYMBOLIC_CLASSES
    table = cell_table.expand(n, k, SYMBOLIC_CHANNELS).clone()
    table[:, :, _VX_CH:] = consts[:, None, :]
    # int32 indices: half the memory traffic of int64 and index_select accepts them.
    rows = classes.int().add_(
        (torch.arange(n, device=classes.device, dtype=torch.int32) * k)[:, None]
    )
    torch.index_select(
        table.view(n * k, SYMBOLIC_CHANNELS), 0, rows.view(-1), out=out.view(-1, SYMBOLIC_CHANNELS)
    )


@lru_cache(maxsize=4)
def _pair_rows_base(num_envs: int, cells: int, device: torch.device) -> torch.Tensor:
    """int32 ``[num_envs * cells / 2]``: the first row of each cell pair's table (see
    :func:`_cell_bytes_in_pairs`); ``num_envs`` is even."""
    k2 = NUM_SYMBOLIC_CLASSES**2
    # Pair j of environments 2m and 2m + 1 belongs to 2m below the seam pair (cells // 2)
    # and to 2m + 1 above it.  The seam pair reads 2m's table and is rewritten after.
    second = (torch.arange(cells, device=device) > cells // 2).int()
    first_env = torch.arange(0, num_envs, 2, device=device, dtype=torch.int32)
    return ((first_env[:, None] + second) * k2).view(-1)


def uses_pair_tables(num_envs: int, device: torch.device | str) -> bool:
    """Whether :func:`symbolic_obs` writes ``num_envs`` observations on ``device`` two cells
    per row from per-environment pair tables (the CPU path for large batches)."""
    return _CPU_PATHS and torch.device(device).type == "cpu" and num_envs >= _PAIRS_FROM


def pair_tables(num_envs: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The per-environment tables of :func:`symbolic_obs`'s CPU path with their class
    bytes filled in, for callers that keep them between calls (its ``tables`` argument):
    uint8 ``[num_envs + num_envs % 2, 25, 20]``.  Each call
    then rewrites only the constant bytes instead of copying the whole tables."""
    pair = _symbolic_tables(torch.device(device))[1]
    return pair.expand(num_envs + num_envs % 2, *pair.shape).clone()


def _cell_bytes_in_pairs(
    classes: torch.Tensor, consts: torch.Tensor, pair_table, out, tables=None
) -> None:
    """:func:`_cell_bytes` with two cells per row: the CPU path.

    On the CPU the ``index_select`` costs about the same per row whether a row holds 10
    or 20 bytes, so this writes half as many rows: from a per-environment table of the 20
    bytes of each pair of classes (25 rows), indexed by each 16-bit word of the class
    bytes (first + 256 * second).  A view has an odd number of cells, so the pairs run
    over two environments at a time, and the one pair that straddles them (the first
    environment's last cell, the second's first) is written separately, after the rest.
    ``N`` must be even.  Same bytes as :func:`_cell_bytes` (tests compare them).
    ``tables`` is :func:`pair_tables` for these ``N`` environments, or None for a copy.
    """
    n, cells = classes.shape
    k = NUM_SYMBOLIC_CLASSES
    c = SYMBOLIC_CHANNELS
    dev = classes.device
    # The table: both cells' class bytes, then each cell's constant bytes, written as
    # 16- and 32-bit words (a row is 20 bytes, so only the second cell's are 4-aligned).
    table = pair_table.expand(n, k * k, 2 * c).clone() if tables is None else tables
    _put_constants(table, consts)
    # Row of a pair within its environment's table: first + k * second.
    word = classes.view(-1).view(torch.int16)
    row = torch.sub(word, word >> 8, alpha=256 - k).int().add_(_pair_rows_base(n, cells, dev))
    torch.index_select(table.view(-1, 2 * c), 0, row, out=out.view(-1, 2 * c))

    # The seam pairs: class bytes from the shared table and each environment's own
    # constants, then one copy into place.
    by_env = classes.view(n, cells)
    seam = pair_table.index_select(0, by_env[0::2, cells - 1].long() + k * by_env[1::2, 0].long())
    seam.view(n // 2, 2, c)[:, :, _VX_CH:] = consts.view(n // 2, 2, 4)
    out.view(n // 2, 2 * cells * c)[:, (cells - 1) * c : (cells + 1) * c] = seam


def _put_constants(table: torch.Tensor, consts: torch.Tensor) -> None:
    """Write each environment's constant bytes (``consts``, ``[N, 4]``) into both cells
    of every row of its pair table (``[N, R, 20]``): bytes 6-9 and 16-19.  Bytes 16-19
    of a 20-byte row are one aligned 32-bit word; bytes 6-9 two 16-bit ones, which is
    cheaper than four strided bytes."""
    n, r = table.shape[:2]
    halves = table.view(torch.int16).view(n, r, SYMBOLIC_CHANNELS)
    low = consts.view(torch.int16)  # [N, 2]
    for w in range(2):
        halves[:, :, _VX_CH // 2 + w] = low[:, w : w + 1]
    words = table.view(torch.int32).view(n, r, SYMBOLIC_CHANNELS // 2)
    words[:, :, -1] = consts.view(torch.int32)  # [N, 1]


class SymbolicPlan(NamedTuple):
    """What :func:`symbolic_obs` works out per environment before it writes anything:
    elementwise arithmetic on ``[N]`` tensors (a few dozen small operations), which
    :class:`~.core.CoinRunCore` compiles on the CPU."""

    ax: torch.Tensor  # int64 [N]: the agent's tile
    ay: torch.Tensor
    on_grid: torch.Tensor  # bool [N]: the agent's tile is inside the grid
    crop_starts: torch.Tensor  # int64 [N, view]: each view row's first byte in padded_classes
    constant_bytes: torch.Tensor  # uint8 [N, 4]: the constant planes
    centre: torch.Tensor  # int64 [N]: byte 0 of the agent's cell in the output
    coin_byte: torch.Tensor  # int64 [N]: the coin channel byte to set; -1: the dump slot


def symbolic_plan(state: EnvState, view: int = 13, constants: tuple | None = None) -> SymbolicPlan:
    """The :class:`SymbolicPlan` of ``symbolic_obs(state, view)``."""
    n = state.num_envs
    dev = state.device
    half = view // 2
    cells = view * view
    scale = (constants if constants is not None else _symbolic_tables(dev))[2]
    fx, fy = state.agent_x.floor(), state.agent_y.floor()
    ax, ay = fx.long(), fy.long()
    # Physics keeps every agent inside the grid; the view from a tile outside it is all
    # wall (both crops agree on that).
    on_grid = (ax >= 0) & (ax < GRID_W) & (ay >= 0) & (ay < GRID_H)

    # In padded_classes, the view of an agent on tile (ax, ay) starts at row
    # GRID_H - 1 - ay and column ax.  A view from off the grid reads the all-wall block
    # below the grid instead, so no read leaves the environment's own layout.
    rows, cols = padded_shape(view)
    top = torch.where(on_grid, (GRID_H - 1 - ay) * cols + ax, (half + GRID_H) * cols)
    crop_starts = (torch.arange(n, device=dev) * (rows * cols) + top)[:, None] + torch.arange(
        0, view * cols, cols, device=dev
    )

    # Constant planes: each value mapped linearly from its range to 0..255, rounded and
    # clamped, ``(value - lo) * (255 / (hi - lo))``, all four at once.
    offset = torch.stack(
        (
            state.agent_vx + MAX_SPEED,
            state.agent_vy + MAX_JUMP,
            state.agent_x - fx,
            state.agent_y - fy,
        ),
        dim=1,
    )
    constant_bytes = offset.mul_(scale).round_().clamp_(0, 255).to(torch.uint8)

    centre = torch.arange(n, device=dev) * (cells * SYMBOLIC_CHANNELS) + (
        (half * view + half) * SYMBOLIC_CHANNELS
    )
    coin_byte = _mark_byte(centre, state.coin_x - ax, state.coin_y - ay, None, view, _COIN_CH)
    return SymbolicPlan(ax, ay, on_grid, crop_starts, constant_bytes, centre, coin_byte)


def _mark_byte(first, dx, dy, keep, view: int, channel: int) -> torch.Tensor:
    """The output byte of ``channel`` in the cell ``(dx, dy)`` tiles from the agent (y up)
    whose environment's agent cell starts at byte ``first``; -1 where the cell is outside
    the view or ``keep`` (if given) is False."""
    half = view // 2
    inside = (dx.abs() <= half) & (dy.abs() <= half)
    if keep is not None:
        inside &= keep
    return torch.where(inside, first + (dx - dy * view) * SYMBOLIC_CHANNELS + channel, -1)


def symbolic_obs(
    state: EnvState,
    view: int = 13,
    *,
    constants: tuple | None = None,
    padded: torch.Tensor | None = None,
    plan: SymbolicPlan | None = None,
    tables: torch.Tensor | None = None,
    enemy_slots: EnemySlots | None = None,
) -> torch.Tensor:
    """Agent-centred symbolic observation, uint8 ``[N, view, view, SYMBOLIC_CHANNELS]``.

    The crop is centred on the agent's tile ``(floor(agent_x), floor(agent_y))``; image
    row 0 is the top (highest y), column 0 the left (lowest x).  Channels (see
    ``SYMBOLIC_CHANNEL_NAMES``) are 0 or 255: solid (walls and everything outside the
    grid), lava, saw, crate, coin (the coin's tile), enemy (the tile containing each
    alive enemy's centre).  The last four are constant planes: agent velocity
    ``round(127.5 + 127.5 * vx / MAX_SPEED)`` and ``... vy / MAX_JUMP`` (clamped to
    0..255), and the sub-tile position ``round(255 * frac(agent_x))`` / ``frac(agent_y)``.

    ``constants`` is :func:`symbolic_constants`'s tuple, looked up when not given
    (callers that ``torch.compile`` this function pass it, so the compiled graph holds no
    cache lookup).  ``padded`` is ``padded_classes(state.grid, view)``, for callers that
    observe the same levels many times and keep it (the crop then copies rows of it,
    about a third of the cost of the gather); without it the view is gathered from the
    grid itself.  ``plan`` is ``symbolic_plan(state, view, constants)``, for callers that
    compute it separately.  ``tables`` (:func:`pair_tables`) and ``enemy_slots``
    (:func:`alive_enemy_slots`, which must match the state's levels) are kept between
    calls by callers that observe large batches on the CPU; the CPU path uses them, other
    devices ignore them.
    """
    if view < 3 or view % 2 == 0:
        raise ValueError(f"view must be odd and >= 3, got {view}")
    n = state.num_envs
    dev = state.device
    half = view // 2
    cells = view * view
    if constants is None:
        constants = _symbolic_tables(dev)
    cell_table, pair_table, _ = constants
    if plan is None:
        plan = symbolic_plan(state, view, constants)
    elif plan.crop_starts.shape != (n, view):
        raise ValueError(
            f"plan is for {tuple(plan.crop_starts.shape)} (environments, view); it must be "
            f"symbolic_plan(state, {view}) for these {n} environments"
        )
    ax, ay = plan.ax, plan.ay
    if padded is None:
        # Padding a whole batch costs more than one crop (a byte transpose), so direct
        # callers gather from the grid itself; CoinRunCore keeps padded grids.
        tiles = _crop_tiles(state.grid, ax - half, ay + half, view, view).view(n, cells)
        classes = symbolic_classes(tiles).mul_(plan.on_grid[:, None])  # SOLID_CLASS == 0
    elif padded.shape != (n, *padded_shape(view)):
        expected = (n, *padded_shape(view))
        raise ValueError(
            f"padded has shape {tuple(padded.shape)}; for view={view} and {n} environments "
            f"it must be padded_classes(state.grid, {view}), of shape {expected}"
        )
    else:
        classes = _crop_padded(padded, plan.crop_starts, view)
    consts = plan.constant_bytes

    total = n * cells * SYMBOLIC_CHANNELS
    if uses_pair_tables(n, dev):
        # Pairs run over two environments at a time: an odd batch gets a blank partner
        # for its last environment, written past the output and never returned.
        pad = n % 2
        if pad:
            classes = torch.cat((classes, classes.new_zeros(1, cells)))
            consts = torch.cat((consts, consts.new_zeros(1, 4)))
        if tables is not None and tables.shape[0] != n + pad:
            raise ValueError(
                f"tables has shape {tuple(tables.shape)}; for {n} environments it must be "
                f"pair_tables({n}), of shape {(n + pad, *tables.shape[1:])}"
            )
        buf = torch.empty(total + pad * cells * SYMBOLIC_CHANNELS + 1, dtype=torch.uint8)
        _cell_bytes_in_pairs(classes, consts, pair_table, buf[:-1], tables)
    else:
        buf = torch.empty(total + 1, dtype=torch.uint8, device=dev)
        _cell_bytes(classes, consts, cell_table, buf[:total])
    out = buf[:total]

    # Coin and enemies: set one byte each.  Items outside the view and dead enemies
    # write the last byte of buf, the dump slot, instead (see "Sparse writes").  Alive
    # enemies are few (none in easy mode): on the CPU they are picked out first.
    buf[plan.coin_byte] = 255  # -1: the dump slot
    owner, enemy_x, enemy_y, alive = _alive_enemies(state, enemy_slots)
    enemy_byte = _mark_byte(
        plan.centre.index_select(0, owner),  # (index_select: a third of indexing's cost)
        enemy_x.floor().long() - ax.index_select(0, owner),
        enemy_y.floor().long() - ay.index_select(0, owner),
        alive,
        view,
        _ENEMY_CH,
    )
    buf[enemy_byte] = 255
    return out.view(n, view, view, SYMBOLIC_CHANNELS)


# --- Pixel observation --------------------------------------------------------------------
def _first_tile(a: torch.Tensor, off: float) -> torch.Tensor:
    """int64 ``[N]``: the tile ``k`` with ``k - a <= off < k + 1 - a`` (``a`` float64).

    ``floor`` of the rounded sum can be off by one right at a tile edge; the exact
    comparisons (both sides are exact in float64) fix it.
    """
    k = (a + off).floor_()
    k -= (k - a > off).to(k.dtype)
    k += (k + 1 - a <= off).to(k.dtype)
    return k.long()


def _count_edges(edges: torch.Tensor, geo: _PixelGeometry, strict: bool) -> torch.Tensor:
    """int32 ``[N, size]``: for every pixel ``p``, how many of ``edges[n]`` (increasing,
    ``[N, E]``) are ``<= offset[p]`` (``< offset[p]`` if ``strict``).

    Finds where each edge starts (a small search) and counts with a cumulative sum,
    which is cheaper than searching for every pixel.
    """
    n, width = edges.shape[0], geo.size + 1  # pixel `size`: edges past the image
    starts = torch.searchsorted(geo.offset, edges.contiguous(), right=strict)  # [N, E]
    starts += torch.arange(n, device=edges.device)[:, None] * width
    marks = torch.zeros(n * width, dtype=torch.int32, device=edges.device)
    # (index_put_ with accumulate stays deterministic under torch's deterministic mode)
    marks.index_put_((starts.view(-1),), torch.ones((), dtype=torch.int32), accumulate=True)
    return marks.view(n, width)[:, : geo.size].cumsum(1, dtype=torch.int32)


def _span(lo: torch.Tensor, hi: torch.Tensor, offset: torch.Tensor, axis: str):
    """First pixel and end pixel (exclusive) whose centre lies in ``[lo, hi)``.

    ``lo``/``hi`` are offsets from the agent's centre in tiles (any shape, same shape),
    along x (``axis="x"``, pixel columns left to right) or y (``axis="y"``, y up, pixel
    rows top to bottom); ``offset`` is :attr:`_PixelGeometry.offset`.
    """
    lo, hi = lo.double().contiguous(), hi.double().contiguous()
    if axis == "x":  # lo <= offset[p] < hi
        return torch.searchsorted(offset, lo), torch.searchsorted(offset, hi)
    # Row p is offset[p] tiles below the agent: lo <= -offset[p] < hi.
    return torch.searchsorted(offset, -hi, right=True), torch.searchsorted(offset, -lo, right=True)


def _draw_boxes(
    pixels: torch.Tensor,
    geo: _PixelGeometry,
    env: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rx: float,
    ry: float,
    colour: torch.Tensor,
    keep: torch.Tensor,
    radius: float | None = None,
) -> None:
    """Fill boxes ``[x - rx, x + rx) x [y - ry, y + ry)`` (optionally only the part within
    ``radius`` of the centre) in ``pixels``, the flat ``[N * size * size + 1, 3]`` output
    whose last row is the dump slot.

    ``env`` (int64), ``x``, ``y`` (float64 offsets from that environment's agent) and
    ``keep`` (which boxes to draw) have one entry per box.  Each box is drawn by
    scattering its at most ``kx * ky`` candidate pixels; candidates outside the box or
    the image are dropped.
    """
    (env, x, y), keep = _select(keep, env, x, y)  # on CPU: only the boxes to draw
    size = geo.size
    kx = math.floor(2 * rx * geo.px_per_tile) + 1
    ky = math.floor(2 * ry * geo.px_per_tile) + 1
    x_start, x_end = _span(x - rx, x + rx, geo.offset, "x")
    y_start, y_end = _span(y - ry, y + ry, geo.offset, "y")
    px = x_start[:, None] + torch.arange(kx, device=x.device)  # [B, kx]
    py = y_start[:, None] + torch.arange(ky, device=x.device)  # [B, ky]
    ok = (py < y_end[:, None])[:, :, None] & (px < x_end[:, None])[:, None, :]  # [B, ky, kx]
    if radius is not None:
        dx2 = (geo.offset[px.clamp(max=size - 1)] - x[:, None]).square()
        dy2 = (geo.offset[py.clamp(max=size - 1)] + y[:, None]).square()  # -offset - y
        ok &= dy2[:, :, None] + dx2[:, None, :] <= radius * radius
    if keep is not None:
        ok &= keep[:, None, None]
    flat = ((env[:, None] * size + py) * size)[:, :, None] + px[:, None, :]
    (flat,), ok = _select(ok, flat)
    _scatter(pixels, flat, ok, colour)


def pixel_obs(
    state: EnvState,
    size: int = 64,
    tiles_across: float = 12.8,
    *,
    constants=None,
    enemy_slots: EnemySlots | None = None,
) -> torch.Tensor:
    """Agent-centred RGB image, uint8 ``[N, size, size, 3]``.

    ``tiles_across`` tiles are visible horizontally and vertically, with the agent's box
    centre at the image centre (64 px / 12.8 tiles = 5 px per tile).  Pixel ``(px, py)``
    shows the world point ``agent + (-tiles_across/2 + (px + 0.5) * tiles_across/size,
    tiles_across/2 - (py + 0.5) * tiles_across/size)``: the tile under it in the colours
    of ``PALETTE[state.theme]`` (outside the grid is wall), then, on top, the coin as a
    gold disc in its tile, alive enemies as purple 1x1 boxes and the agent as a
    ``2 AGENT_RX x 2 AGENT_RY`` box in ``AGENT_COLOURS[theme]`` with a black eye on the
    side it faces.  Entities are drawn at their continuous positions.

    On CPU, visible entities are selected with boolean indexing before drawing; on other
    devices everything stays branch-free without host syncs.  ``constants`` is
    :func:`pixel_constants`'s tuple for the same arguments, looked up when not given.
    ``enemy_slots`` (:func:`alive_enemy_slots`, matching the state's levels) is for
    callers that keep it between calls; the CPU path uses it, other devices ignore it.
    """
    if size < 1 or not tiles_across > 0:
        raise ValueError(f"need size >= 1 and tiles_across > 0, got {size}, {tiles_across}")
    n = state.num_envs
    dev = state.device
    if constants is None:
        constants = pixel_constants(size, tiles_across, dev)
    geo, palette, colours = constants
    tiles_n = geo.tiles
    ax = state.agent_x.double()
    ay = state.agent_y.double()

    # Tile columns and rows are separable.  Find the top-left visible tile, then the
    # local tile column of every pixel column (row of every pixel row) by counting the
    # tile edges at or left of (above) its centre.
    x0 = _first_tile(ax, geo.first_offset)
    y_top = _first_tile(ay, -geo.first_offset)
    steps = torch.arange(1, tiles_n, device=dev, dtype=torch.float64)
    x_edges = (x0[:, None] + steps) - ax[:, None]  # left edges of the next columns
    y_edges = ay[:, None] - ((y_top + 1)[:, None] - steps)  # minus tops of the next rows
    col = _count_edges(x_edges, geo, strict=False)  # [N, size] int32
    row = _count_edges(y_edges, geo, strict=True)  # [N, size] int32
    tiles = _crop_tiles(state.grid, x0, y_top, tiles_n, tiles_n)  # [N, T, T]

    # Colour at tile resolution, then expand: every tile row to `size` pixels (3-byte
    # rows), then every image row is a copy of one expanded tile row.
    colour_rows = (
        tiles.view(n, tiles_n * tiles_n).int().add_((state.theme.int() * NUM_TILES)[:, None])
    )
    tile_rgb = palette.index_select(0, colour_rows.view(-1))  # [N*T*T, 3]
    tile_row_ids = torch.arange(n * tiles_n, device=dev, dtype=torch.int32) * tiles_n
    row_rgb = tile_rgb.index_select(0, (tile_row_ids.view(n, tiles_n, 1) + col[:, None]).view(-1))
    down = row.add_((torch.arange(n, device=dev, dtype=torch.int32) * tiles_n)[:, None])
    npix = n * size * size
    buf = torch.empty((npix + 1) * 3, dtype=torch.uint8, device=dev)  # + 1: dump pixel
    out = buf[: npix * 3]
    torch.index_select(
        row_rgb.view(n * tiles_n, size * 3), 0, down.view(-1), out=out.view(n * size, size * 3)
    )
    pixels = buf.view(npix + 1, 3)

    # Coin: a gold disc in its tile.  Enemies: alive ones whose box can overlap the view.
    reach = tiles_across / 2 + 0.5
    cx = state.coin_x.double() + 0.5 - ax
    cy = state.coin_y.double() + 0.5 - ay
    coin_visible = (cx.abs() < reach) & (cy.abs() < reach)
    env_ids = torch.arange(n, device=dev)
    _draw_boxes(pixels, geo, env_ids, cx, cy, 0.5, 0.5, colours["coin"], coin_visible, _COIN_RADIUS)
    reach = tiles_across / 2 + ENEMY_R
    env_e, ex, ey, alive = _alive_enemies(state, enemy_slots)
    ex = ex.double() - ax[env_e]
    ey = ey.double() - ay[env_e]
    visible = (ex.abs() < reach) & (ey.abs() < reach)
    if alive is not None:
        visible &= alive
    _draw_boxes(pixels, geo, env_e, ex, ey, ENEMY_R, ENEMY_R, colours["enemy"], visible)

    # The agent's box never moves on screen.
    image = out.view(n, size, size, 3)
    x_lo, x_hi, y_lo, y_hi = geo.agent_box
    body = colours["agent"][state.theme]  # [N, 3]
    image[:, y_lo:y_hi, x_lo:x_hi] = body[:, None, None, :]
    eye = max(1, round(geo.px_per_tile / 5))
    if x_hi - x_lo >= 3 * eye and y_hi - y_lo >= 2 * eye:
        right = state.facing_right[:, None, None, None]
        eye_rows = slice(y_lo + eye, y_lo + 2 * eye)
        image[:, eye_rows, x_hi - 2 * eye : x_hi - eye] = torch.where(
            right, colours["eye"], body[:, None, None, :]
        )
        image[:, eye_rows, x_lo + eye : x_lo + 2 * eye] = torch.where(
            right, body[:, None, None, :], colours["eye"]
        )
    return image


# --- Human view ---------------------------------------------------------------------------
def human_frame(
    state: EnvState, index: int = 0, size: int = 512, tiles_across: float = 20.0
) -> np.ndarray:
    """uint8 ``[size, size, 3]`` numpy image of environment ``index`` for people.

    The :func:`pixel_obs` view of that environment, larger and wider, with the level's
    original end tile (``end_x``, ``end_y``) outlined in a black-and-white chequer so
    that it stays visible when the coin has been moved elsewhere.
    """
    n = state.num_envs
    if not -n <= index < n:
        raise IndexError(f"environment index {index} out of range for {n} environments")
    index %= n
    one = state.index(slice(index, index + 1))
    image = pixel_obs(one, size, tiles_across)[0]

    geo = _pixel_geometry(int(size), float(tiles_across), image.device)
    ax, ay = one.agent_x.double(), one.agent_y.double()
    x_lo, x_hi = _span(one.end_x - ax, one.end_x + 1 - ax, geo.offset, "x")
    y_lo, y_hi = _span(one.end_y - ay, one.end_y + 1 - ay, geo.offset, "y")
    px = torch.arange(size, device=image.device)
    in_x = (px >= x_lo) & (px < x_hi)  # [size]; all False when the end is off-screen
    in_y = (px >= y_lo) & (px < y_hi)
    t = max(1, round(geo.px_per_tile / 10))  # outline thickness
    edge_x = (px < x_lo + t) | (px >= x_hi - t)
    edge_y = (px < y_lo + t) | (px >= y_hi - t)
    outline = in_y[:, None] & in_x[None, :] & (edge_y[:, None] | edge_x[None, :])
    chequer = ((px // t)[:, None] + (px // t)[None, :]) % 2 == 0  # [size, size]
    dark, light = (
        torch.tensor(c, dtype=torch.uint8, device=image.device) for c in END_MARKER_COLOURS
    )
    marker = torch.where(chequer[:, :, None], dark, light)
    image = torch.where(outline[:, :, None], marker, image)
    return image.cpu().numpy()
