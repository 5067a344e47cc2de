"""Maze, the family's second game: procgen's Maze with the cheese in the top-right corner
region of training levels (procgenAISC's ``maze_aisc``) and anywhere on a
``rand_fraction`` share of them."""

from .config import DISTRIBUTION_MODES, OBS_MODES, WORLD_DIM, MazeConfig

__all__ = ["DISTRIBUTION_MODES", "OBS_MODES", "WORLD_DIM", "MazeConfig"]
