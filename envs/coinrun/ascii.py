"""Levels as text: draw a level for a person, or build a hand-made level for a test.

Characters (top line = highest row)::

    #  wall            =  wall top        (space) empty     |  barrier (invisible)
    ~  lava            ^  lava top        *  saw            c  crate
    $  coin            E  end (original coin position; the coin itself if no '$')
    e  walking enemy   A  agent (its feet on the bottom of this tile)

``state_from_ascii`` pads the drawing into the 64 x 64 grid with its bottom line at
``y = 1`` and its first column at ``x = 1``, inside the outer walls and above the floor.
"""

from __future__ import annotations

import torch

from .state import (
    AGENT_RY,
    BARRIER,
    CRATE,
    EMPTY,
    ENEMY_R,
    ENEMY_SPEED,
    GRID_H,
    GRID_W,
    LAVA,
    LAVA_TOP,
    SAW,
    WALL,
    WALL_TOP,
    EnvState,
)

_TILE_OF = {
    "#": WALL,
    "=": WALL_TOP,
    " ": EMPTY,
    ".": EMPTY,
    "|": BARRIER,
    "~": LAVA,
    "^": LAVA_TOP,
    "*": SAW,
    "c": CRATE,
}
_CHAR_OF = {code: ch for ch, code in _TILE_OF.items() if ch != "."}


def state_from_ascii(lines: list[str], device: str | torch.device = "cpu") -> EnvState:
    """A one-environment ``EnvState`` holding the drawn level (see the module docstring).

    Walking enemies patrol between the nearest wall or barrier on either side of their
    start and start walking right.
    """
    s = EnvState.zeros(1, device)
    grid = torch.full((GRID_W, GRID_H), EMPTY, dtype=torch.uint8)
    grid[0, :] = WALL
    grid[GRID_W - 1, :] = WALL
    grid[:, 0] = WALL_TOP
    grid[:, GRID_H - 1] = WALL
    coin = end = agent = None
    enemies = []
    for row, line in enumerate(reversed(lines)):
        y = 1 + row
        for col, ch in enumerate(line):
            x = 1 + col
            if ch in _TILE_OF:
                grid[x, y] = _TILE_OF[ch]
            elif ch == "$":
                coin = (x, y)
            elif ch == "E":
                end = (x, y)
            elif ch == "e":
                enemies.append((x, y))
            elif ch == "A":
                agent = (x, y)
            else:
                raise ValueError(f"unknown level character {ch!r} at line {len(lines) - row}")
    if agent is None:
        raise ValueError("the drawing needs an agent 'A'")
    end = end or coin
    coin = coin or end
    if coin is None:
        raise ValueError("the drawing needs a coin '$' or an end 'E'")

    s.grid = grid[None].to(device)
    s.update_bits()
    s.agent_x[:] = agent[0] + 0.5
    s.agent_y[:] = agent[1] + AGENT_RY
    s.facing_right[:] = True
    s.coin_x[:], s.coin_y[:] = coin[0], coin[1]
    s.end_x[:], s.end_y[:] = end[0], end[1]
    s.coin_randomized[:] = coin != end
    for slot, (x, y) in enumerate(enemies):
        line = grid[:, y]
        blocks = [i for i in range(GRID_W) if line[i] < 2 or line[i] == BARRIER]
        left = max(i for i in blocks if i < x)
        right = min(i for i in blocks if i > x)
        s.enemy_alive[0, slot] = True
        s.enemy_x[0, slot] = x + 0.5
        s.enemy_y[0, slot] = y + 0.5
        s.enemy_vx[0, slot] = ENEMY_SPEED
        s.enemy_lo[0, slot] = left + 1 + ENEMY_R
        s.enemy_hi[0, slot] = right - ENEMY_R
    return s


def state_to_ascii(s: EnvState, index: int = 0, top: int | None = None) -> str:
    """Draw environment ``index`` of a state (rows from ``top`` down to the floor)."""
    grid = s.grid[index].cpu()
    if top is None:
        solid_cols = [x for x in range(1, GRID_W - 1) if int(grid[x, GRID_H // 2]) != WALL]
        top = 1 + max(
            (y for x in solid_cols for y in range(GRID_H - 1) if int(grid[x, y]) != EMPTY),
            default=1,
        )
        top = min(GRID_H - 1, top + 6)
    marks = {}
    for slot in range(s.enemy_alive.shape[1]):
        if bool(s.enemy_alive[index, slot]):
            marks[(int(s.enemy_x[index, slot]), int(s.enemy_y[index, slot]))] = "e"
    marks[(int(s.end_x[index]), int(s.end_y[index]))] = "E"
    marks[(int(s.coin_x[index]), int(s.coin_y[index]))] = "$"
    marks[(int(s.agent_x[index]), int(s.agent_y[index] - AGENT_RY + 1e-3))] = "A"
    rows = []
    for y in range(top, -1, -1):
        rows.append("".join(marks.get((x, y), _CHAR_OF[int(grid[x, y])]) for x in range(GRID_W)))
    return "\n".join(rows)
