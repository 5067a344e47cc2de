"""Mazes as text: draw a level for a person, or build a hand-made one for a test.

Characters (top line = highest row, ``y`` up as in procgen)::

    #  wall      .  open cell      A  the agent (on an open cell)      c  the cheese

``state_from_ascii`` makes the drawing the whole world and the whole maze (margin 0,
``maze_dim`` = its side), so the start is the bottom-left cell and the corner the
top-right one, whatever the drawing's walls.
"""

from __future__ import annotations

import torch

from .levels import MazeLevels, corner_lo
from .moves import in_corner
from .paths import decision_levels
from .state import MazeState


def state_from_ascii(lines: list[str], corner_size: int = 1) -> MazeState:
    """A one-environment ``MazeState`` from a square drawing (see the module docstring);
    the agent starts at ``A``, or at the bottom-left cell when the drawing has no ``A``."""
    d = len(lines)
    if any(len(line) != d for line in lines):
        raise ValueError(f"a maze drawing must be square; got lines of lengths {lines}")
    s = MazeState.zeros(1, d, "cpu")
    found = {}
    for row, line in enumerate(lines):
        y = d - 1 - row
        for x, ch in enumerate(line):
            if ch not in "#.Ac":
                raise ValueError(f"unknown maze character {ch!r} at ({x}, {y})")
            s.wall[0, x, y] = ch == "#"
            if ch in "Ac":
                found[ch] = (x, y)
    if "c" not in found:
        raise ValueError("a maze drawing needs a cheese 'c'")
    levels = MazeLevels(wall=s.wall, maze_dim=torch.tensor([d]), margin=torch.tensor([0]))
    s.maze_dim, s.margin = levels.maze_dim, levels.margin
    s.cheese_x, s.cheese_y = (torch.tensor([v]) for v in found["c"])
    s.agent_x, s.agent_y = (torch.tensor([v]) for v in found.get("A", (0, 0)))
    s.corner_lo = corner_lo(levels, corner_size)
    s.decision_level = decision_levels(levels, s.cheese_x, s.cheese_y)
    s.reached_corner = in_corner(s, s.agent_x, s.agent_y)
    return s


def level_to_ascii(state: MazeState, index: int = 0) -> list[str]:
    """Environment ``index`` of ``state`` as lines of text (top line = highest row)."""
    d = state.world_dim
    wall = state.wall[index].cpu()
    agent = (int(state.agent_x[index]), int(state.agent_y[index]))
    cheese = (int(state.cheese_x[index]), int(state.cheese_y[index]))
    lines = []
    for y in reversed(range(d)):
        chars = []
        for x in range(d):
            ch = "#" if wall[x, y] else "."
            ch = "c" if (x, y) == cheese else ch
            chars.append("A" if (x, y) == agent else ch)
        lines.append("".join(chars))
    return lines
