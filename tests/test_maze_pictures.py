"""`coinrun-mg levels --env maze`: Maze levels drawn from above."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from coinrun_mg import cli
from coinrun_mg.envs.maze import MazeConfig, start_states
from coinrun_mg.pictures import MAZE_COLOURS, draw_maze_level


def test_a_maze_level_is_drawn_cell_by_cell():
    config = MazeConfig(distribution_mode="easy", corner_size=3)
    state = start_states(torch.tensor([7]), config)
    picture = np.asarray(draw_maze_level(state, 0, tile_px=2))
    d = state.world_dim
    assert picture.shape == (2 * d, 2 * d, 3)

    def cell(x: int, y: int) -> tuple[int, ...]:
        return tuple(picture[2 * (d - 1 - y), 2 * x])  # row 0 at the top

    m = int(state.margin[0])
    assert cell(m, m) == MAZE_COLOURS["start"]
    assert cell(int(state.cheese_x[0]), int(state.cheese_y[0])) == MAZE_COLOURS["cheese"]
    assert cell(0, 0) == MAZE_COLOURS["wall"] or m == 0
    walls = sum(cell(x, y) == MAZE_COLOURS["wall"] for x in range(d) for y in range(d))
    assert walls == int(state.wall[0].sum())


def test_cli_levels_draws_the_maze(tmp_path, capsys):
    out = tmp_path / "maze.png"
    args = ["levels", "--env", "maze", "--seeds", "0-5", "--distribution-mode", "easy"]
    assert cli.main([*args, "--columns", "3", "--tile-px", "4", "--out", str(out)]) == 0
    assert "6 levels" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.width >= 3 * 15 * 4
