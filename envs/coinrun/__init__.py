"""CoinRun, the first game of the family: its config, state, levels, physics,
observations and core (the Gymnasium facades are in ``gym_env.py``, the stock procgen
backend in ``procgen_env.py``; importing this package imports neither)."""

from .config import CoinRunConfig
from .core import INFO_KEYS, CoinRunCore, initial_states, level_seeds_for, start_states
from .levels import COIN_PLACEMENTS, Levels, coin_moved, generate_levels, place_coins
from .observation import (
    SYMBOLIC_CHANNEL_NAMES,
    SYMBOLIC_CHANNELS,
    human_frame,
    pixel_obs,
    symbolic_obs,
)
from .physics import StepEvents, physics_step
from .state import NUM_ACTIONS, EnvState

__all__ = [
    "COIN_PLACEMENTS",
    "INFO_KEYS",
    "NUM_ACTIONS",
    "SYMBOLIC_CHANNELS",
    "SYMBOLIC_CHANNEL_NAMES",
    "CoinRunConfig",
    "CoinRunCore",
    "EnvState",
    "Levels",
    "StepEvents",
    "coin_moved",
    "generate_levels",
    "human_frame",
    "initial_states",
    "level_seeds_for",
    "physics_step",
    "pixel_obs",
    "place_coins",
    "start_states",
    "symbolic_obs",
]
