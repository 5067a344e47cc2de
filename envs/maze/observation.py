"""Maze's observations: the symbolic planes and the 64 x 64 picture, both of the whole
world (procgen's easy and hard Maze are not agent-centred: the whole world fills the
frame), and an optional agent-centred window of the symbolic planes (``view_size``).

Both are images with row 0 at the top, so world row ``y`` is image row ``D - 1 - y``
and world column ``x`` is image column ``x`` (procgen draws ``y`` upwards).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from .state import MazeState

SYMBOLIC_CHANNEL_NAMES = ("wall", "cheese", "agent")
SYMBOLIC_CHANNELS = len(SYMBOLIC_CHANNEL_NAMES)
PIXEL_SIZE = 64

# Plain colours instead of procgen's assets (its sand wall tile, cheese and mouse sprites
# and per-level backgrounds are not shipped): what a cell holds decides its colour.
CELL_COLOUR_NAMES = ("open", "wall", "cheese", "agent", "corner")
CELL_COLOURS = (
    (30, 32, 48),  # open: a dark background
    (196, 164, 112),  # wall: sand
    (255, 214, 40),  # cheese: yellow
    (150, 150, 164),  # agent: a grey mouse
    (52, 62, 92),  # open cell of the corner region (human frames only)
)


def _image_rows(plane: torch.Tensor) -> torch.Tensor:
    """An x-major ``[N, D, D]`` world plane as an image ``[N, row, column]``, row 0 at the
    top."""
    return plane.transpose(1, 2).flip(1)


def _at(state: MazeState, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """bool ``[N, D, D]`` (x-major): the one cell ``(x, y)`` of each environment."""
    cells = torch.arange(state.world_dim, device=state.device)
    return (cells[None, :, None] == x[:, None, None]) & (cells[None, None, :] == y[:, None, None])


def symbolic_walls(wall: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """uint8 ``[N, D + 2m, D + 2m, 3]``: the symbolic view of x-major walls ``[N, D, D]``
    alone (the wall plane 255 where a wall is, the cheese and agent planes empty), with a
    ``margin`` m of wall all around (for agent-centred views)."""
    n, d = wall.shape[0], wall.shape[1]
    side = d + 2 * margin
    obs = torch.zeros((n, side, side, SYMBOLIC_CHANNELS), dtype=torch.uint8, device=wall.device)
    if margin:
        obs[..., 0] = 255
    obs[:, margin : margin + d, margin : margin + d, 0] = _image_rows(wall.view(torch.uint8)) * 255
    return obs


def symbolic_obs(state: MazeState, walls: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 ``[N, D, D, 3]``: wall, cheese and agent planes (255 where present, else 0),
    row 0 at the top of the world, the layout of CoinRun's symbolic view.

    Written as the walls' image (``symbolic_walls``; ``walls`` passes one kept from
    earlier steps, since a level's walls do not change, and it is copied, not written)
    and one byte each for the cheese and the agent.
    """
    n, d = state.num_envs, state.world_dim
    obs = symbolic_walls(state.wall) if walls is None else walls.clone()
    flat = obs.view(n, -1)
    for channel, (x, y) in enumerate(
        ((state.cheese_x, state.cheese_y), (state.agent_x, state.agent_y)), start=1
    ):
        at = ((d - 1 - y) * d + x) * SYMBOLIC_CHANNELS + channel
        flat.scatter_(1, at[:, None], 255)
    return obs


def egocentric_obs(
    state: MazeState, view_size: int, walls: torch.Tensor | None = None
) -> torch.Tensor:
    """uint8 ``[N, V, V, 3]``: the planes of ``symbolic_obs`` in a ``view_size`` V window
    centred on the agent, cells outside the world shown as wall.

    ``walls`` is ``symbolic_walls(state.wall, V // 2)``, kept between steps (copied, not
    written).
    """
    n, d, r = state.num_envs, state.world_dim, view_size // 2
    side = d + 2 * r
    obs = symbolic_walls(state.wall, r) if walls is None else walls.clone()
    flat = obs.view(n, -1)
    for channel, (x, y) in enumerate(
        ((state.cheese_x, state.cheese_y), (state.agent_x, state.agent_y)), start=1
    ):
        at = ((d - 1 - y + r) * side + x + r) * SYMBOLIC_CHANNELS + channel
        flat.scatter_(1, at[:, None], 255)
    # The window's top-left cell, in padded image coordinates, is the agent's unpadded one.
    offsets = torch.arange(view_size, device=state.device)
    rows = (d - 1 - state.agent_y)[:, None] + offsets
    cols = state.agent_x[:, None] + offsets
    envs = torch.arange(n, device=state.device)[:, None, None]
    return obs[envs, rows[:, :, None], cols[:, None, :]]


def cell_codes(state: MazeState, mark_corner: bool = False) -> torch.Tensor:
    """uint8 ``[N, D, D]`` (x-major): each cell's index into ``CELL_COLOURS`` (the agent
    drawn over the cheese)."""
    code = state.wall.to(torch.uint8)
    if mark_corner:
        cells = torch.arange(state.world_dim, device=state.device)
        lo = state.corner_lo[:, None, None]
        region = (cells[None, :, None] >= lo) & (cells[None, None, :] >= lo) & ~state.wall
        code = torch.where(region, 4, code)
    # Two single-cell writes: cheaper than comparing every cell against both positions.
    flat = code.reshape(state.num_envs, -1).clone()
    d = state.world_dim
    flat.scatter_(1, (state.cheese_x * d + state.cheese_y)[:, None], 2)
    flat.scatter_(1, (state.agent_x * d + state.agent_y)[:, None], 3)
    return flat.reshape(code.shape)


def _pixel_cells(size: int, world_dim: int, device: torch.device) -> torch.Tensor:
    """For each of ``size`` pixels across, the world cell under its centre."""
    centres = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) * world_dim / size
    return centres.floor().to(torch.int64)


def picture(state: MazeState, size: int = PIXEL_SIZE, mark_corner: bool = False) -> torch.Tensor:
    """uint8 ``[N, size, size, 3]``: the whole world, each pixel coloured by the cell
    under its centre (``size / D`` pixels per cell: 2.56 in hard mode, 4.27 in easy)."""
    cells = _pixel_cells(size, state.world_dim, state.device)
    palette = torch.tensor(CELL_COLOURS, dtype=torch.uint8, device=state.device)
    # Colour the D x D cells first, then widen them to pixels (rows, then columns).
    colours = palette[_image_rows(cell_codes(state, mark_corner)).long()]  # [N, D, D, 3]
    return colours.index_select(1, cells).index_select(2, cells)


def pixel_obs(state: MazeState, tables: tuple | None = None) -> torch.Tensor:
    """uint8 ``[N, 64, 64, 3]``: procgen's 64 x 64 observation of the whole world, the
    same image as ``picture(state, 64)`` drawn with fewer, larger operations.

    A pixel row is 192 bytes, 24 eight-byte words; each word covers pixels of at most
    ``K`` neighbouring cells (``_word_tables``), so its bytes are a function of those
    cells' codes.  One matrix product turns every image row's cell codes into each word's
    combination number, a table lookup gives the words, and the pixel rows are copied
    from the cell rows under them.  Integer codes below 2**24 are exact in float32.
    ``tables``: :func:`word_tables` of the world side, given by a caller that compiles
    this function (torch.compile does not see through the cache that makes them once);
    tables of another side (a hand-built state's) are made afresh.
    """
    n, d = state.num_envs, state.world_dim
    if tables is None or tables[0].shape[0] != d:
        tables = word_tables(d, state.device)
    weights, offsets, table, rows = tables
    codes = cell_codes(state).to(torch.float32)  # [N, x, y]
    combos = torch.matmul(codes.transpose(1, 2), weights)  # [N, y, words]
    words = table.index_select(0, (combos.to(torch.int64) + offsets).reshape(-1))
    cell_rows = words.view(n, d, -1).view(torch.uint8)  # [N, y, 3 * PIXEL_SIZE]
    return cell_rows.index_select(1, rows).view(n, PIXEL_SIZE, PIXEL_SIZE, 3)


def word_tables(world_dim: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The tables of :func:`pixel_obs` for a world side on ``device`` (made once each)."""
    return _word_tables(world_dim, len(CELL_COLOURS), torch.device(device))


@cache
def _word_tables(world_dim: int, base: int, device: torch.device):
    """The tables of ``pixel_obs`` for a world side: ``weights`` float32 ``[D, W]`` (the
    combination number of word ``w`` is the sum of ``code(x) * weights[x, w]`` over a pixel
    row's cells ``x``), ``offsets`` int64 ``[W]`` (where word ``w``'s block of the table
    starts), ``table`` int64 (each word's bytes for every combination of its cells'
    codes) and ``rows`` int64 ``[64]`` (the world row ``y`` under each pixel row)."""
    cells = _pixel_cells(PIXEL_SIZE, world_dim, torch.device("cpu")).numpy()
    row_bytes = 3 * PIXEL_SIZE
    word = 8
    n_words = row_bytes // word
    byte_cell = cells[np.arange(row_bytes) // 3]  # the cell under each byte of a row
    covered = [np.unique(byte_cell[w * word : (w + 1) * word]) for w in range(n_words)]
    k = max(len(c) for c in covered)
    combos = base**k
    weights = np.zeros((world_dim, n_words), dtype=np.float32)
    table = np.zeros((n_words, combos, word), dtype=np.uint8)
    palette = np.asarray(CELL_COLOURS, dtype=np.uint8)
    digits = (np.arange(combos)[:, None] // base ** np.arange(k)[None, :]) % base  # [C, k]
    for w, cover in enumerate(covered):
        weights[cover, w] = base ** np.arange(len(cover))
        byte = np.arange(w * word, (w + 1) * word)
        slot = np.searchsorted(cover, byte_cell[byte])  # which covered cell each byte shows
        table[w] = palette[digits[:, slot], byte % 3]  # [C, word]
    offsets = np.arange(n_words, dtype=np.int64) * combos
    rows = world_dim - 1 - cells  # pixel row i shows world row y = D - 1 - cells[i]
    return (
        torch.from_numpy(weights).to(device),
        torch.from_numpy(offsets).to(device),
        torch.from_numpy(table.reshape(-1, word).view(np.int64).reshape(-1)).to(device),
        torch.from_numpy(rows.astype(np.int64)).to(device),
    )


def human_frame(state: MazeState, index: int = 0, size: int = 512) -> np.ndarray:
    """uint8 ``[size, size, 3]`` numpy image of environment ``index`` for people: the
    observation's picture, larger, with the open cells of the corner region tinted."""
    n = state.num_envs
    if not -n <= index < n:
        raise IndexError(f"environment index {index} out of range for {n} environments")
    index %= n
    one = state.index(slice(index, index + 1))
    return picture(one, size, mark_corner=True)[0].cpu().numpy()
