"""The environments: a family of batched torch games (CoinRun in ``coinrun/``, Maze in
``maze/``) and what they share (seed hashing, argument checks, compiling, the event vocabulary,
the Gymnasium facades, the procgen state codec).

Importing this package imports torch and CoinRun's core, but neither Gymnasium's facades
nor procgen: those load with ``coinrun_mg.envs.coinrun.gym_env`` and
``coinrun_mg.envs.coinrun.procgen_env``.  Maze loads with ``coinrun_mg.envs.maze``.
"""

from .checks import resolve_device
from .coinrun import (
    COIN_PLACEMENTS,
    INFO_KEYS,
    NUM_ACTIONS,
    SYMBOLIC_CHANNEL_NAMES,
    SYMBOLIC_CHANNELS,
    CoinRunConfig,
    CoinRunCore,
    EnvState,
    Levels,
    StepEvents,
    coin_moved,
    generate_levels,
    human_frame,
    initial_states,
    level_seeds_for,
    physics_step,
    pixel_obs,
    place_coins,
    start_states,
    symbolic_obs,
)
from .compile import COMPILE_WORDS, resolve_compile
from .events import FAMILY_KEYS, GAME_EVENTS, EventKeys, family_events

__all__ = [
    "COIN_PLACEMENTS",
    "COMPILE_WORDS",
    "FAMILY_KEYS",
    "GAME_EVENTS",
    "INFO_KEYS",
    "NUM_ACTIONS",
    "SYMBOLIC_CHANNELS",
    "SYMBOLIC_CHANNEL_NAMES",
    "CoinRunConfig",
    "CoinRunCore",
    "EnvState",
    "EventKeys",
    "Levels",
    "StepEvents",
    "coin_moved",
    "family_events",
    "generate_levels",
    "human_frame",
    "initial_states",
    "level_seeds_for",
    "physics_step",
    "pixel_obs",
    "place_coins",
    "resolve_compile",
    "resolve_device",
    "start_states",
    "symbolic_obs",
]
