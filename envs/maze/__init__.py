"""Maze, the family's second game: procgen's Maze with the cheese in the top-right corner
region of training levels (procgenAISC's ``maze_aisc``) and anywhere on a
``rand_fraction`` share of them.

Its config, state, levels, moves, paths (decision levels), observations and core; the
Gymnasium facades are in ``gym_env.py`` and the scripted walkers in ``solver.py``
(importing this package imports neither).
"""

from .config import DISTRIBUTION_MODES, OBS_MODES, WORLD_DIM, MazeConfig
from .core import INFO_KEYS, MazeCore, initial_states, start_states
from .levels import MazeLevels, cheese_moved, draw_maze_dims, generate_mazes, place_cheese
from .moves import StepEvents, action_deltas, maze_step
from .observation import SYMBOLIC_CHANNEL_NAMES, SYMBOLIC_CHANNELS, pixel_obs, symbolic_obs
from .paths import PathLengths, decision_levels, is_decision_level, path_lengths
from .state import CHEESE_REWARD, NUM_ACTIONS, MazeState

__all__ = [
    "CHEESE_REWARD",
    "DISTRIBUTION_MODES",
    "INFO_KEYS",
    "NUM_ACTIONS",
    "OBS_MODES",
    "SYMBOLIC_CHANNELS",
    "SYMBOLIC_CHANNEL_NAMES",
    "WORLD_DIM",
    "MazeConfig",
    "MazeCore",
    "MazeLevels",
    "MazeState",
    "PathLengths",
    "StepEvents",
    "action_deltas",
    "cheese_moved",
    "decision_levels",
    "draw_maze_dims",
    "generate_mazes",
    "initial_states",
    "is_decision_level",
    "maze_step",
    "path_lengths",
    "pixel_obs",
    "place_cheese",
    "start_states",
    "symbolic_obs",
]
