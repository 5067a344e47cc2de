"""Pictures of whole CoinRun levels, and the drawing helpers the videos and the game share.

:func:`draw_level` draws one level of a batched
:class:`~coinrun_mg.envs.coinrun.state.EnvState` from its tile grid, in the colours the
environment renders (``envs/coinrun/observation.py``), with
the coin, the original end and the agent (at the start, for a fresh state) marked;
:func:`level_grid` lays out many levels, each captioned with its level seed and whether
its coin was moved, above a legend; :func:`save_level_grid` is what
``coinrun-mg levels`` runs.

Levels are named by their *level seed* (the ``level_seed`` info key, procgen's
``start_level`` numbering), so the level of a video or an evaluation row can be drawn
again with ``coinrun-mg levels --seeds SEED``.

Markers (the same in the level pictures, the videos and the game):

* coin - a gold disc with a dark rim;
* original end - the end tile (where the coin sits when it is not moved) filled with a
  black-and-white chequer, a finish flag; the videos' main view keeps the
  environment's own marker, a chequered outline of that tile;
* start / agent - the agent's box in its theme colour, with an eye on the side it faces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import start_states
from coinrun_mg.envs.coinrun.state import (
    AGENT_RX,
    AGENT_RY,
    BARRIER,
    EMPTY,
    ENEMY_R,
    GRID_H,
    MAX_DY,
    NUM_TILES,
    EnvState,
)

__all__ = [
    "LEGEND",
    "draw_level",
    "level_grid",
    "level_rows",
    "level_states",
    "parse_seed_list",
    "save_level_grid",
]

# Colours of the overlays (RGB).
TEXT = (255, 255, 255)
TEXT_STROKE = (0, 0, 0)
CAPTION_BG = (32, 34, 40)
COIN_RIM = (120, 80, 0)
AGENT_RIM = (0, 0, 0)
#: What the level pictures mark, in legend order.
LEGEND = ("start", "coin", "original end", "enemy")

# Headroom above a level's highest tile: a full jump (MAX_DY tiles) plus one row.
_HEADROOM = MAX_DY + 1


# --- Text ---------------------------------------------------------------------------------


@cache
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels (its fixed bitmap font on old Pillows)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no sizes
        return ImageFont.load_default()


def text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    message: str,
    size: int,
    *,
    fill=TEXT,
    anchor: str = "la",
) -> None:
    """Text with a dark outline, readable on any background."""
    stroke = max(1, size // 8)
    draw.text(
        xy, message, font=font(size), fill=fill, anchor=anchor, stroke_width=stroke,
        stroke_fill=TEXT_STROKE,
    )  # fmt: skip


def text_width(message: str, size: int) -> float:
    return font(size).getlength(message)


# --- Markers ------------------------------------------------------------------------------


def draw_coin(draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float) -> None:
    """The coin: a gold disc with a dark rim, centred on ``(cx, cy)``."""
    rim = max(1, round(radius / 6))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    draw.ellipse(box, fill=render.COIN_COLOUR, outline=COIN_RIM, width=rim)


def draw_end(draw: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float) -> None:
    """The original end: the tile box ``[x0, x1) x [y0, y1)`` filled with a black-and-white
    chequer (a finish flag), 4 x 4 squares (fewer when the box is under 8 pixels)."""
    dark, light = render.END_MARKER_COLOURS
    k = max(2, min(4, round((x1 - x0) / 2)))
    xs = np.linspace(x0, x1, k + 1).round().astype(int)
    ys = np.linspace(y0, y1, k + 1).round().astype(int)
    for i in range(k):
        for j in range(k):
            colour = dark if (i + j) % 2 == 0 else light
            draw.rectangle((xs[i], ys[j], xs[i + 1] - 1, ys[j + 1] - 1), fill=colour)


def draw_agent(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: Sequence[int],
    facing_right: bool = True,
) -> None:
    """The agent: its box in ``colour`` with a dark rim and an eye on the facing side."""
    # Whole pixels: PIL rounds each float corner on its own, which can flip a 1-pixel box.
    x0, y0, x1, y1 = box = tuple(round(v) for v in box)
    width = x1 - x0
    rim = max(1, round(width / 12))
    draw.rectangle(box, fill=tuple(int(c) for c in colour), outline=AGENT_RIM, width=rim)
    eye = max(1, round(width / 5))
    ex = x1 - 2 * eye if facing_right else x0 + eye
    draw.rectangle((ex, y0 + eye, ex + eye - 1, y0 + 2 * eye - 1), fill=(0, 0, 0))


def draw_enemy(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float]) -> None:
    draw.rectangle(box, fill=render.ENEMY_COLOUR)


# --- Level geometry -----------------------------------------------------------------------


def level_rows(state: EnvState, index: int = 0) -> int:
    """Rows worth drawing: the highest non-empty tile of the level (up to its end column),
    the coin and the end, plus room for a jump above them."""
    end_x = int(state.end_x[index])
    grid = state.grid[index, 1 : end_x + 1, : GRID_H - 1]
    filled = (grid != EMPTY) & (grid != BARRIER)
    rows = torch.arange(grid.shape[1])
    top = int(torch.where(filled, rows, 0).max())
    top = max(top, int(state.end_y[index]), int(state.coin_y[index]))
    return min(GRID_H, top + 1 + _HEADROOM)


def level_columns(state: EnvState, index: int = 0) -> int:
    """Columns worth drawing: from the left wall to one wall column beyond the end."""
    return int(state.end_x[index]) + 2


def tile_colours(state: EnvState, index: int = 0) -> np.ndarray:
    """uint8 ``[GRID_H, GRID_W, 3]`` image of the level's tiles, row 0 at the top (y = 63)."""
    lut = render._palette_by_code(torch.device("cpu"))
    codes = state.grid[index].cpu().long() + int(state.theme[index]) * NUM_TILES
    rgb = lut[codes]  # [W, H, 3], x-major, y up
    return rgb.permute(1, 0, 2).flip(0).numpy()


class LevelCanvas:
    """World-to-pixel mapping of a level picture: ``tile_px`` pixels per tile, ``rows``
    rows above the floor (row 0 at the bottom), ``columns`` columns from x = 0."""

    def __init__(self, rows: int, columns: int, tile_px: int):
        self.rows, self.columns, self.tile_px = rows, columns, tile_px

    @property
    def size(self) -> tuple[int, int]:
        return self.columns * self.tile_px, self.rows * self.tile_px

    def point(self, x: float, y: float) -> tuple[float, float]:
        return x * self.tile_px, (self.rows - y) * self.tile_px

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """Pixel box of the world box ``[x0, x1] x [y0, y1]`` (y up)."""
        (px0, py1), (px1, py0) = self.point(x0, y0), self.point(x1, y1)
        return px0, py0, px1 - 1, py1 - 1

    def tile(self, tx: int, ty: int) -> tuple[float, float, float, float]:
        """Pixel box (PIL's inclusive corners) of tile ``(tx, ty)``."""
        return self.box(tx, ty, tx + 1, ty + 1)


def draw_level(
    state: EnvState,
    index: int = 0,
    tile_px: int = 8,
    *,
    rows: int | None = None,
    columns: int | None = None,
    labels: bool = True,
) -> Image.Image:
    """Environment ``index`` of ``state`` as a picture of its whole level.

    Tiles in the level's theme colours, walking enemies, the original end (chequered
    outline), the coin and the agent where it stands (at the start for a fresh state).
    ``rows`` / ``columns`` crop the picture (default :func:`level_rows` and
    :func:`level_columns`: the floor up to a jump above the highest tile, the left
    wall to one column beyond the end).  ``labels`` writes "start", "coin" and "end"
    next to the markers.
    """
    if isinstance(tile_px, bool) or not isinstance(tile_px, int) or tile_px < 2:
        raise ValueError(f"tile_px={tile_px!r} is invalid; it must be an int >= 2")
    n = state.num_envs
    if not -n <= index < n:
        raise IndexError(f"environment index {index} out of range for {n} environments")
    index %= n
    rows = rows or level_rows(state, index)
    columns = columns or level_columns(state, index)
    tiles = tile_colours(state, index)[GRID_H - rows :, :columns]
    pixels = tiles.repeat(tile_px, axis=0).repeat(tile_px, axis=1)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    draw = ImageDraw.Draw(image)
    canvas = LevelCanvas(rows, columns, tile_px)
    mark_level(draw, canvas, state, index, labels=labels)
    return image


def mark_level(
    draw: ImageDraw.ImageDraw,
    canvas: LevelCanvas,
    state: EnvState,
    index: int,
    labels: bool = True,
    agent: bool = True,
) -> None:
    """Draw the enemies, the end, the coin and (``agent``) the agent onto a level picture."""
    for slot in state.enemy_alive[index].nonzero().flatten().tolist():
        ex, ey = float(state.enemy_x[index, slot]), float(state.enemy_y[index, slot])
        draw_enemy(draw, canvas.box(ex - ENEMY_R, ey - ENEMY_R, ex + ENEMY_R, ey + ENEMY_R))
    t = canvas.tile_px
    end_x, end_y = int(state.end_x[index]), int(state.end_y[index])
    coin_x, coin_y = int(state.coin_x[index]), int(state.coin_y[index])
    end_box = canvas.tile(end_x, end_y)
    draw_end(draw, end_box[0], end_box[1], end_box[2] + 1, end_box[3] + 1)
    cx, cy = canvas.point(coin_x + 0.5, coin_y + 0.5)
    draw_coin(draw, cx, cy, 0.45 * t)
    ax, ay = float(state.agent_x[index]), float(state.agent_y[index])
    if agent:
        colour = render.AGENT_COLOURS[int(state.theme[index])].tolist()
        box = canvas.box(ax - AGENT_RX, ay - AGENT_RY, ax + AGENT_RX, ay + AGENT_RY)
        draw_agent(draw, box, colour, bool(state.facing_right[index]))
    if labels:
        size = max(9, round(1.3 * t))
        gap = 0.25 * t
        if (coin_x, coin_y) != (end_x, end_y):
            text(draw, (end_box[0] + t / 2, end_box[1] - gap), "end", size, anchor="md")
            text(draw, (cx, cy - 0.5 * t - gap), "coin", size, anchor="md")
        else:
            text(draw, (cx, cy - 0.5 * t - gap), "coin = end", size, anchor="md")
        if agent:
            top = canvas.point(ax, ay + AGENT_RY)
            text(draw, (top[0], top[1] - gap), "start", size, anchor="md")


# --- Grids of levels ----------------------------------------------------------------------


def level_states(
    level_seeds: Iterable[int],
    rand_fraction: float = 0.0,
    distribution_mode: str = "hard",
    **config: object,
) -> EnvState:
    """Fresh episode states (agent at the start) of the given level seeds.

    ``rand_fraction`` and ``distribution_mode`` (and any other
    :class:`~coinrun_mg.envs.coinrun.config.CoinRunConfig` field in ``config``) decide the
    level and its coin exactly as in the environment.
    """
    seeds = [int(s) for s in level_seeds]
    if not seeds or any(s < 0 or s >= 2**31 for s in seeds):
        raise ValueError(f"level_seeds={seeds!r} is invalid; pass one or more ints in [0, 2**31)")
    cfg = CoinRunConfig(rand_fraction=rand_fraction, distribution_mode=distribution_mode, **config)
    return start_states(torch.tensor(seeds, dtype=torch.int64), cfg)


def _legend(width: int, tile_px: int, theme_colour: Sequence[int]) -> Image.Image:
    """A strip explaining the markers and the hazards, wrapped onto more lines if narrow."""
    size = max(12, round(1.6 * tile_px))
    line_h = round(2.2 * size)
    tiles = render.PALETTE[0].tolist()  # hazards look the same in every theme
    tile_of = {
        name: tiles[render.TILE_COLOUR_NAMES.index(key)]
        for name, key in (("saw", "saw"), ("lava", "lava"), ("crate", "crate"))
    }
    items = []  # (name, x, line)
    x, line = size, 0
    for name in LEGEND + tuple(tile_of):
        item_w = size + size / 2 + text_width(name, size)
        if x > size and x + item_w > width - size:
            x, line = size, line + 1
        items.append((name, x, line))
        x += item_w + 1.5 * size
    image = Image.new("RGB", (width, line_h * (line + 1)), CAPTION_BG)
    draw = ImageDraw.Draw(image)
    for name, x, line in items:
        y0 = line * line_h + (line_h - size) / 2
        box = (x, y0, x + size - 1, y0 + size - 1)
        if name == "start":
            draw_agent(draw, box, theme_colour)
        elif name == "coin":
            draw_coin(draw, x + size / 2, y0 + size / 2, size * 0.45)
        elif name == "original end":
            draw_end(draw, x, y0, x + size, y0 + size)
        elif name == "enemy":
            draw_enemy(draw, box)
        else:
            draw.rectangle(box, fill=tuple(tile_of[name]))
        text(draw, (x + 1.5 * size, y0 + size / 2), name, size, anchor="lm")
    return image


def level_grid(
    level_seeds: Iterable[int],
    columns: int = 4,
    tile_px: int = 8,
    *,
    rand_fraction: float = 0.0,
    distribution_mode: str = "hard",
    labels: bool = True,
    **config: object,
) -> Image.Image:
    """Levels drawn side by side, ``columns`` per row, each captioned, over a legend.

    Every level is drawn at the same scale (``tile_px`` pixels per tile) and keeps its
    length, so short and long levels can be compared; cells are as large as the
    largest level.
    """
    seeds = [int(s) for s in level_seeds]
    _check_columns(columns)
    state = level_states(seeds, rand_fraction, distribution_mode, **config)
    pictures = [draw_level(state, i, tile_px, labels=labels) for i in range(len(seeds))]
    captions = [
        f"level {seed}" + ("  \u00b7  coin moved" if bool(moved) else "")
        for seed, moved in zip(seeds, state.coin_randomized.tolist())
    ]
    return _sheet(pictures, captions, columns, tile_px, legend=True)


def _check_columns(columns: object) -> None:
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns={columns!r} is invalid; it must be an int >= 1")


def _sheet(
    pictures: Sequence[Image.Image],
    captions: Sequence[str],
    columns: int,
    tile_px: int,
    legend: bool,
) -> Image.Image:
    """Pictures side by side, ``columns`` per row, each captioned (bottom-aligned), over
    CoinRun's legend when ``legend``."""
    columns = min(columns, len(pictures))
    caption_size = max(12, round(1.6 * tile_px))
    cell_w = max(max(p.width for p in pictures), *(text_width(c, caption_size) for c in captions))
    cell_w = int(np.ceil(cell_w))
    # Each row of the grid is as tall as its tallest level.
    row_h = [
        max(p.height for p in pictures[start : start + columns])
        for start in range(0, len(pictures), columns)
    ]
    caption_h = round(1.8 * caption_size)
    pad = max(4, tile_px)
    width = columns * cell_w + (columns + 1) * pad
    tops = np.cumsum([pad] + [caption_h + h + pad for h in row_h]).tolist()
    body_h = tops[-1]
    key = _legend(width, tile_px, render.AGENT_COLOURS[0].tolist()) if legend else None
    sheet = Image.new("RGB", (width, body_h + (key.height if key else 0)), CAPTION_BG)
    draw = ImageDraw.Draw(sheet)
    for i, (caption, picture) in enumerate(zip(captions, pictures)):
        row, col = divmod(i, columns)
        x = pad + col * (cell_w + pad)
        y = tops[row]
        text(draw, (x, y + caption_h / 2), caption, caption_size, anchor="lm")
        # Bottom-aligned, so floors line up along a row.
        sheet.paste(picture, (x, y + caption_h + row_h[row] - picture.height))
    if key is not None:
        sheet.paste(key, (0, body_h))
    return sheet


# --- Maze levels ------------------------------------------------------------------------------

MAZE_COLOURS = {
    "wall": (40, 40, 60),
    "open": (225, 225, 215),
    "corner": (240, 190, 190),  # open cells of the corner region
    "cheese": (250, 200, 30),
    "start": (60, 110, 220),
}


def draw_maze_level(state, index: int, tile_px: int) -> Image.Image:
    """One Maze level (a ``MazeState`` row) from above: walls, open cells, the corner
    region tinted, the cheese and the start, ``tile_px`` pixels per cell, y up."""
    d = state.world_dim
    x = torch.arange(d)[:, None]
    y = torch.arange(d)[None, :]
    lo = int(state.corner_lo[index])
    colour = np.zeros((d, d, 3), dtype=np.uint8)  # [x, y]
    wall = state.wall[index].cpu()
    colour[...] = MAZE_COLOURS["open"]
    colour[((x >= lo) & (y >= lo) & ~wall).numpy()] = MAZE_COLOURS["corner"]
    colour[wall.numpy()] = MAZE_COLOURS["wall"]
    colour[int(state.cheese_x[index]), int(state.cheese_y[index])] = MAZE_COLOURS["cheese"]
    colour[int(state.agent_x[index]), int(state.agent_y[index])] = MAZE_COLOURS["start"]
    rows = colour.transpose(1, 0, 2)[::-1]  # row 0 at the top
    image = Image.fromarray(np.ascontiguousarray(rows), "RGB")
    return image.resize((d * tile_px, d * tile_px), Image.NEAREST)


def maze_level_grid(
    level_seeds: Iterable[int],
    columns: int = 4,
    tile_px: int = 8,
    *,
    rand_fraction: float = 0.0,
    distribution_mode: str = "hard",
    corner_size: int = 1,
) -> Image.Image:
    """Maze levels side by side (cheese yellow, start blue, the corner region pink),
    captioned with the level seed, whether the cheese was moved and whether it is a
    decision level."""
    from coinrun_mg.envs.maze import MazeConfig
    from coinrun_mg.envs.maze import start_states as maze_start_states

    seeds = [int(s) for s in level_seeds]
    _check_columns(columns)
    config = MazeConfig(
        distribution_mode=distribution_mode, rand_fraction=rand_fraction, corner_size=corner_size
    )
    state = maze_start_states(torch.tensor(seeds, dtype=torch.int64), config)
    pictures = [draw_maze_level(state, i, tile_px) for i in range(len(seeds))]
    captions = []
    for seed, moved, decision in zip(
        seeds, state.cheese_moved.tolist(), state.decision_level.tolist()
    ):
        words = [f"level {seed}"] + ["cheese moved"] * moved + ["decision level"] * decision
        captions.append("  \u00b7  ".join(words))
    return _sheet(pictures, captions, columns, tile_px, legend=False)


def save_level_grid(
    path: str | os.PathLike, level_seeds: Iterable[int], game: str = "coinrun", **kwargs
) -> Path:
    """:func:`level_grid` (or :func:`maze_level_grid` for ``game="maze"``) written to
    ``path`` (the format from its suffix, e.g. ``.png``)."""
    path = Path(path)
    draw = maze_level_grid if game == "maze" else level_grid
    image = draw(level_seeds, **kwargs)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image.save(path, optimize=True)
    except ValueError as exc:  # unknown extension
        raise ValueError(
            f"out={str(path)!r} is invalid: {exc}; use a picture suffix such as .png"
        ) from None
    return path


# --- Seed lists -------------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seed_list(text_: str) -> list[int]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,10"`` -> the seeds (ranges include both ends)."""
    seeds: list[int] = []
    for part in text_.split(","):
        if not part.strip():
            continue
        match = _RANGE.match(part)
        if match is None:
            raise ValueError(
                f"seeds={text_!r} is invalid; use a range, a list or both, e.g. 0-15, 3,7,9 "
                "or 0-3,10"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"seeds={text_!r} is invalid: the range {part.strip()} is empty")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise ValueError(f"seeds={text_!r} is invalid; it names no seed (e.g. 0-15)")
    if len(seeds) > 1024:
        raise ValueError(f"seeds={text_!r} names {len(seeds)} levels; at most 1024 per picture")
    return seeds
