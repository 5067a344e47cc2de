"""Maze's observations: the symbolic planes and the 64 x 64 picture, both of the whole
world (procgen's easy and hard Maze are not agent-centred: the whole world fills the
frame).

Both are images with row 0 at the top, so world row ``y`` is image row ``D - 1 - y``
and world column ``x`` is image column ``x`` (procgen draws ``y`` upwards).
"""

from __future__ import annotations

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


def symbolic_obs(state: MazeState) -> torch.Tensor:
    """uint8 ``[N, D, D, 3]``: wall, cheese and agent planes (255 where present, else 0),
    row 0 at the top of the world, the layout of CoinRun's symbolic view."""
    planes = torch.stack(
        (
            state.wall,
            _at(state, state.cheese_x, state.cheese_y),
            _at(state, state.agent_x, state.agent_y),
        ),
        dim=-1,
    )
    return _image_rows(planes).to(torch.uint8) * 255


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


def pixel_obs(state: MazeState) -> torch.Tensor:
    """uint8 ``[N, 64, 64, 3]``: procgen's 64 x 64 observation of the whole world."""
    return picture(state, PIXEL_SIZE)


def human_frame(state: MazeState, index: int = 0, size: int = 512) -> np.ndarray:
    """uint8 ``[size, size, 3]`` numpy image of environment ``index`` for people: the
    observation's picture, larger, with the open cells of the corner region tinted."""
    n = state.num_envs
    if not -n <= index < n:
        raise IndexError(f"environment index {index} out of range for {n} environments")
    index %= n
    one = state.index(slice(index, index + 1))
    return picture(one, size, mark_corner=True)[0].cpu().numpy()
