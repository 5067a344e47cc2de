"""Read, edit and write stock procgen CoinRun's serialized state.

``ProcgenGym3Env.callmethod("get_state")`` returns one ``bytes`` per environment and
``callmethod("set_state", ...)`` loads them back.  This module is the only place in the
package that knows CoinRun's layout (the part every procgen game shares, its records,
checked reader and the parse and write of the shared layout, ``BasicGameState``, is in
``envs/procgen_codec.py``); ``procgen_env.py`` works with the named fields below.

Layout (procgen 0.10.7, checked byte for byte on real states; native little-endian
4-byte ints and floats, bools written as 4-byte ints, a string is an int length and
its bytes, a random generator is an int "seeded" flag and its mt19937 state as text)::

    int     version                      0
    string  game name                    "coinrun"
    17 ints options                      OPTION_FIELDS (paint_vel_info ... game_n)
    rng     level_seed_rng               draws the next level seed on every reset
    rng     rng                          the game's own generator
    15      game fields                  GAME_FIELDS (reward, done, ..., level_seed,
                                         ..., cur_time, ...)
    int     grid_size                    main_width * main_height
    int     entity count, then 31 fields per entity (ENTITY_DTYPE; the player first)
    19      scene fields                 SCENE_FIELDS (background, movement, camera)
    rng     asset_rng
    9       view fields                  VIEW_FIELDS (main_width, main_height, ...)
    int w, int h, int count, count ints  the tile grid, index y * w + x, y = 0 at bottom
    7       CoinRun tail                 TAIL_FIELDS (last_agent_y ... air_control)
    uint    END_MARKER                   0xCAFECAFE

The names of options 0-8, the level-seed range (13, 14), ``level_seed``, ``cur_time``,
``timeout`` and the tail were confirmed by varying them; the rest follow procgen's
serialization order and are kept only so that a state round-trips unchanged.

``CoinRunState.parse`` checks every count and the fixed values it walks past (game
name, version, 64 x 64 grid, grid size, player first, end marker, nothing left over)
and raises ``ValueError`` on anything else, so a state from another game or another
procgen build is refused instead of being edited blindly.

The second half reads the level out of a state: the coin (end) cell, the sections'
left edges and the safe standing cells, which is what moving the coin needs.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from ..procgen_codec import (
    ENTITY_DTYPE,
    FLOAT,
    GAME_DTYPE,
    INT,
    MAX_ENTITIES,
    OPTIONS_DTYPE,
    BasicGameState,
    record_dtype,
    refusal,
)

GAME_NAME = "coinrun"
GRID_SIZE = 64  # CoinRun's world is 64 x 64 tiles

# --- Grid cell codes -----------------------------------------------------------------
EMPTY = 100
COIN = 1
WALL = 15
WALL_TOP = 16
LAVA = 17
LAVA_TOP = 18
BARRIER = 19  # invisible enemy barrier at section edges
SOLID_CELLS = (WALL, WALL_TOP)

# --- Entity types (saws, enemies and crates are entities, not cells) -----------------
PLAYER = 0
SAW = 2
SAW2 = 3
ENEMY = 5
ENEMY1 = 6
ENEMY2 = 7
CRATE = 20
HAZARD_TYPES = (SAW, SAW2, ENEMY, ENEMY1, ENEMY2)

FIRST_SECTION_X = 5  # CoinRun's generator starts the first section here

TAIL_DTYPE = record_dtype(
    [
        ("last_agent_y", FLOAT),
        ("wall_theme", INT),
        ("has_support", INT),
        ("facing_right", INT),
        ("is_on_crate", INT),
        ("gravity", FLOAT),
        ("air_control", FLOAT),
    ]
)

_OPTIONS_AT = 4 + 4 + len(GAME_NAME)  # version, name length, name
_FIRST_RNG_AT = _OPTIONS_AT + OPTIONS_DTYPE.itemsize


def _refuse(problem: str) -> ValueError:
    return refusal(GAME_NAME, problem)


class CoinRunState(BasicGameState):
    """One procgen CoinRun state as named, editable fields (see :class:`BasicGameState`).

    ``entities`` has the player at index 0; ``grid`` is the 64 x 64 world as ``[x, y]``
    (a view: writing into it edits the state).
    """

    GAME_NAME = GAME_NAME
    TAIL_DTYPE = TAIL_DTYPE

    def _check(self) -> None:
        # The shared parse has checked the layout; these are CoinRun's fixed values.
        if self.entities["type"][0] != PLAYER:
            raise _refuse(f"the first entity has type {self.entities['type'][0]}, not the player")
        view = self.view
        if (view["main_width"], view["main_height"]) != (GRID_SIZE, GRID_SIZE):
            raise _refuse(
                f"world size {int(view['main_width'])} x {int(view['main_height'])}, "
                f"expected {GRID_SIZE} x {GRID_SIZE}"
            )
        w, h = self.grid_w, self.grid_h
        if (w, h) != (GRID_SIZE, GRID_SIZE):
            raise _refuse(
                f"grid {w} x {h} with {self.cells.size} cells (header says {self.grid_size}), "
                f"expected {GRID_SIZE} x {GRID_SIZE} = {GRID_SIZE * GRID_SIZE}"
            )

    @property
    def player(self) -> np.ndarray:
        return self.entities[0]


def parse_state(data: bytes | bytearray | memoryview) -> CoinRunState:
    """``CoinRunState.parse``: named fields of one serialized CoinRun state."""
    return CoinRunState.parse(data)


# --------------------------------------------------------------------------------------
# Per-step fast path: the player's position without a full parse
# --------------------------------------------------------------------------------------

_GAME_TO_PLAYER = GAME_DTYPE.itemsize + 8  # game fields, grid size, entity count
_X_AT = ENTITY_DTYPE.fields["x"][1]
_Y_AT = ENTITY_DTYPE.fields["y"][1]
_TYPE_AT = ENTITY_DTYPE.fields["type"][1]


def player_offset(data) -> int:
    """Byte offset of the player's entity record in a serialized state.

    It moves from step to step because the generators' text states change length, so
    it is found from the two generator lengths (three small reads).
    """
    first = struct.unpack_from("<i", data, _FIRST_RNG_AT + 4)[0]
    second_at = _FIRST_RNG_AT + 8 + first
    second = struct.unpack_from("<i", data, second_at + 4)[0]
    return second_at + 8 + second + _GAME_TO_PLAYER


def player_position(data, size: int | None = None) -> tuple[float, float]:
    """The player's ``(x, y)`` (box centre, tiles) read straight from state bytes.

    ``data`` is any buffer (``bytes``, a cffi buffer); ``size`` its valid length.  Only
    the offsets are checked (a full check is ``CoinRunState.parse``), so pass states
    of a game already validated by a parse.
    """
    size = len(data) if size is None else size
    off = player_offset(data)
    if off + ENTITY_DTYPE.itemsize > size or off < _FIRST_RNG_AT:
        raise _refuse(f"player record at byte {off} lies outside the {size}-byte state")
    if struct.unpack_from("<i", data, off + _TYPE_AT)[0] != PLAYER:
        raise _refuse("the first entity is not the player")
    return struct.unpack_from("<ff", data, off + _X_AT)


def entity_records(data, size: int | None = None) -> np.ndarray:
    """Every entity record (the player first), copied straight from state bytes.

    The per-step fast path of the symbolic view (``procgen_native.py``): the entity
    count sits just before the player's record, so the records are found as in
    :func:`player_position`, without a full parse.  ``data`` is any buffer, ``size`` its
    valid length; only the offsets and the count are checked.
    """
    size = len(data) if size is None else size
    try:
        off = player_offset(data)
        count = struct.unpack_from("<i", data, off - 4)[0] if off >= _FIRST_RNG_AT + 4 else -1
    except struct.error:
        off, count = -1, -1
    if not 1 <= count <= MAX_ENTITIES or off + count * ENTITY_DTYPE.itemsize > size:
        raise _refuse(f"{count} entity records at byte {off} do not fit the {size}-byte state")
    records = np.frombuffer(data, ENTITY_DTYPE, count, off).copy()
    if records["type"][0] != PLAYER:
        raise _refuse("the first entity is not the player")
    return records


# --------------------------------------------------------------------------------------
# The level inside a state
# --------------------------------------------------------------------------------------


@dataclass
class LevelLayout:
    """What coin placement needs to know about a freshly generated level.

    ``end_x, end_y``: the coin's cell (the far-right end).  ``sections``: the left edge
    of every section as the cell where the agent stands there, sorted by x.
    ``standing``: every safe standing cell from ``FIRST_SECTION_X`` up to the end
    (exclusive): an empty cell on top of a wall cell that holds no saw, crate or enemy
    at the start and is not on the floor row (open only in pits, whose floors hold lava,
    saws or walking enemies); as in the native env, a walking enemy's patrol on flat
    ground is allowed.  Both are ``int64`` arrays ``[K, 2]``.
    """

    end_x: int
    end_y: int
    sections: np.ndarray
    standing: np.ndarray


def read_layout(state: CoinRunState) -> LevelLayout:
    """Find the end, the sections and the standing cells of the level in ``state``.

    Section edges come from the ground profile and the invisible barriers.  The
    generator starts the first section at x = 5 and gives every section a height
    different from its neighbour's; it puts a barrier in the open cell just left of a
    section that is higher than the one before (at ``(start - 1, y)``) and one at the
    right end of every section, at ``(next_start, y)``, which survives only where the
    next section is lower (a higher one fills it with ground; the last one becomes the
    coin).  So with ``h(x)`` the first open row of column x (the standing height):

    * a barrier at ``(b, y)`` with ``h(b) < y == h(b + 1)`` starts a section at ``b + 1``
      (a step up: this is also the first section's barrier at x = 4);
    * a barrier at ``(b, y)`` with ``h(b - 1) == y > h(b)`` starts one at ``b`` (a step
      down), standing at ``h(b)``.

    Barriers matching neither pattern are ignored, and a section edge whose standing
    cell is not an empty cell on a wall, or holds an entity, is dropped.  Over 1,280
    levels of both modes every barrier matched one pattern (one barrier per section).
    """
    grid = state.grid  # [x, y]
    w, h = grid.shape
    coin = np.flatnonzero(state.cells == COIN)
    if len(coin) != 1:
        raise ValueError(f"expected exactly one coin cell in a fresh level, found {len(coin)}")
    end_y, end_x = divmod(int(coin[0]), w)

    solid = (grid == WALL) | (grid == WALL_TOP)
    # Standing height per column: rows 0..h(x)-1 are solid from the floor up.
    stand_h = np.where(solid.all(axis=1), h, np.argmin(solid, axis=1)).tolist()

    hazards = _entity_cells(state, w, h)
    occupied = set(hazards)
    empty_on_wall = np.zeros_like(solid)
    empty_on_wall[:, 1:] = (grid[:, 1:] == EMPTY) & solid[:, :-1]

    starts: dict[int, int] = {FIRST_SECTION_X: stand_h[FIRST_SECTION_X]}
    for i in np.flatnonzero(state.cells == BARRIER).tolist():
        by, bx = divmod(i, w)
        if bx + 1 < end_x and stand_h[bx] < by == stand_h[bx + 1]:
            starts[bx + 1] = by
        elif FIRST_SECTION_X < bx < end_x and stand_h[bx - 1] == by > stand_h[bx]:
            starts[bx] = stand_h[bx]
    sections = [
        (x, y)
        for x, y in sorted(starts.items())
        if x < end_x and y < h and empty_on_wall[x, y] and (x, y) not in occupied
    ]

    safe = empty_on_wall
    safe[:FIRST_SECTION_X] = False
    safe[end_x:] = False
    safe[:, 1] = False  # the floor row is only open in pits (lava, saws or walking enemies)
    for x, y in hazards:
        safe[x, y] = False
    return LevelLayout(
        end_x=end_x,
        end_y=end_y,
        sections=np.asarray(sections, dtype=np.int64).reshape(-1, 2),
        standing=np.argwhere(safe).astype(np.int64).reshape(-1, 2),
    )


def _entity_cells(state: CoinRunState, w: int, h: int) -> list[tuple[int, int]]:
    """Cells covered by a saw, an enemy or a crate (not the player) in ``state``."""
    cells: list[tuple[int, int]] = []
    e = state.entities
    kinds = HAZARD_TYPES + (CRATE,)
    for t, x, y, rx, ry in zip(
        e["type"][1:].tolist(),
        e["x"][1:].tolist(),
        e["y"][1:].tolist(),
        e["rx"][1:].tolist(),
        e["ry"][1:].tolist(),
    ):
        if t not in kinds:
            continue
        x0, x1 = max(math.floor(x - rx + 1e-3), 0), min(math.floor(x + rx - 1e-3), w - 1)
        y0, y1 = max(math.floor(y - ry + 1e-3), 0), min(math.floor(y + ry - 1e-3), h - 1)
        cells.extend((cx, cy) for cx in range(x0, x1 + 1) for cy in range(y0, y1 + 1))
    return cells
